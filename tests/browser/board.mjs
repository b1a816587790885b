// Drives the operations board in headless Chromium, as an operator would: signs in by SMS
// (the code arrives on stdin from the Rust test, which reads the fake SMS gateway), opens a
// dead job, reads its error, presses Retry and waits until the job is done.
// Prints `KEY value` lines for the Rust test; saves a screenshot.
import { chromium } from "playwright-core";
import readline from "node:readline";

const { BOARD_URL, OPERATOR_PHONE, JOB_QUEUE, JOB_ID, SCREENSHOT } = process.env;
const input = readline.createInterface({ input: process.stdin });
const lines = input[Symbol.asyncIterator]();
const say = (key, value) => console.log(`${key} ${value}`);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(`${BOARD_URL}/board`);
  await page.fill("#phone", OPERATOR_PHONE);
  await page.click("#send-code");
  await page.waitForSelector("#code:not([hidden])");
  say("CODE_REQUESTED", "1");
  const code = (await lines.next()).value.trim();
  input.close();
  await page.fill("#code", code);
  await page.click("#verify");
  await page.waitForSelector("#queues");
  say("SIGNED_IN", "1");

  await page.click(`tr[data-queue="${JOB_QUEUE}"] a[data-state="dead"]`);
  await page.click(`a[data-job="${JOB_ID}"]`);
  await page.waitForSelector("#job-state");
  say("STATE_BEFORE", await page.textContent("#job-state"));
  say("ERROR_SHOWN", await page.textContent("#job-error"));

  await page.click("#retry");
  let state = "";
  for (let i = 0; i < 100; i++) {
    await page.waitForSelector("#job-state");
    state = await page.textContent("#job-state");
    if (state === "done") break;
    await page.waitForTimeout(100);
    await page.click("#refresh");
  }
  say("STATE_AFTER", state);
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  say("SCREENSHOT", SCREENSHOT);
} finally {
  await browser.close();
}
