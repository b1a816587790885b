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

// Opens a page (the board by default) and signs in by SMS; resolves once `ready` (the
// board's Queues page by default) shows.
export async function signIn(page, boardUrl, phone, { path = "/board", ready = "#queues" } = {}) {
  const input = readline.createInterface({ input: process.stdin });
  const lines = input[Symbol.asyncIterator]();
  await page.goto(`${boardUrl}${path}`);
  await page.fill("#phone", phone);
  await page.click("#send-code");
  await page.waitForSelector("#code:not([hidden])");
  say("CODE_REQUESTED", "1");
  const code = (await lines.next()).value.trim();
  input.close();
  await page.fill("#code", code);
  await page.click("#verify");
  await page.waitForSelector(ready);
  say("SIGNED_IN", "1");
}
