// Drives the operations board in headless Chromium, as an operator would: signs in by SMS,
// opens a dead job, reads its error, presses Retry and waits until the job is done.
// Prints `KEY value` lines for the Rust test (tests/system/board.rs); saves a screenshot.
import { launch, say, signIn } from "./common.mjs";

const { BOARD_URL, OPERATOR_PHONE, JOB_QUEUE, JOB_ID, SCREENSHOT } = process.env;

const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await signIn(page, BOARD_URL, OPERATOR_PHONE);

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
