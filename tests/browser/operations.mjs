// The board's operations pages in headless Chromium, as an operator uses them: the
// throughput chart on the Queues page fills as jobs finish; the Processes page lists the
// worker process with its pid; the dead jobs of one member are filtered, counted, confirmed
// and retried in one action. Prints `KEY value` lines for tests/system/board.rs and saves a
// screenshot of each page under ARTIFACTS.
import { launch, say, signIn } from "./common.mjs";

const { BOARD_URL, OPERATOR_PHONE, MEMBER_ID, ARTIFACTS } = process.env;
const shot = async (page, name) => {
  const path = `${ARTIFACTS}/${name}.png`;
  await page.screenshot({ path, fullPage: true });
  say("SCREENSHOT", path);
};

const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await signIn(page, BOARD_URL, OPERATOR_PHONE);

  // The chart re-renders itself every few seconds: wait until it counts finished jobs.
  await page.waitForFunction(() => Number(document.querySelector("#throughput")?.dataset.processed) > 0,
    null, { timeout: 30000 });
  say("CHART_MINUTES", await page.getAttribute("#throughput", "data-minutes"));
  say("CHART_PROCESSED", await page.getAttribute("#throughput", "data-processed"));
  await shot(page, "queues-throughput");

  await page.click('a[data-go="processes"]');
  await page.waitForSelector('#processes tr[data-kind="worker"]');
  say("WORKER_PIDS", (await page.$$eval('#processes tr[data-kind="worker"]', rows => rows.map(r => r.dataset.pid))).join(","));
  await shot(page, "processes");

  await page.click('a[data-go="queues"]');
  await page.click('tr[data-queue="notify"] a[data-state="dead"]');
  await page.waitForSelector("#jobs");
  say("DEAD_ROWS_BEFORE", await page.$$eval("#jobs tr[data-row]", rows => rows.length));
  await page.fill("#filter-member_id", MEMBER_ID);
  await page.click("#apply-filter");
  await page.waitForSelector('#jobs[data-filter*="member_id="]');
  say("DEAD_ROWS_FILTERED", await page.$$eval("#jobs tr[data-row]", rows => rows.length));

  await page.click("#bulk-retry");
  await page.waitForSelector("dialog#confirm[open]");
  say("CONFIRM_TEXT", await page.textContent("#confirm-text"));
  await shot(page, "bulk-retry-confirm");
  await page.click("#confirm-yes");
  await page.waitForSelector("#bulk-done");
  say("BULK_APPLIED", await page.getAttribute("#bulk-done", "data-applied"));
  await shot(page, "bulk-retry-done");
} finally {
  await browser.close();
}
