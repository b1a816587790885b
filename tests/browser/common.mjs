// Shared by the board scripts: Debian's Chromium, the operator's SMS sign-in (the code
// arrives on stdin from the Rust test, which reads the fake SMS gateway) and `KEY value`
// lines for the Rust test.
import { chromium } from "playwright-core";
import readline from "node:readline";

export const say = (key, value) => console.log(`${key} ${value}`);

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

// Opens the board and signs in by SMS; resolves once the Queues page shows.
export async function signIn(page, boardUrl, phone) {
  const input = readline.createInterface({ input: process.stdin });
  const lines = input[Symbol.asyncIterator]();
  await page.goto(`${boardUrl}/board`);
  await page.fill("#phone", phone);
  await page.click("#send-code");
  await page.waitForSelector("#code:not([hidden])");
  say("CODE_REQUESTED", "1");
  const code = (await lines.next()).value.trim();
  input.close();
  await page.fill("#code", code);
  await page.click("#verify");
  await page.waitForSelector("#queues");
  say("SIGNED_IN", "1");
}
