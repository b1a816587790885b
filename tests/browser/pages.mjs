// The board's support and coalition pages in headless Chromium, each visited as an operator
// uses it and each with one action: a member found by phone, her profile and ledger read,
// blocked and unblocked; the businesses with their integrations' health; a promo chain
// paused; the audit log filtered to that chain. Prints `KEY value` lines for
// tests/system/board.rs and saves a screenshot of each page under ARTIFACTS.
import { launch, say, signIn } from "./common.mjs";

const { BOARD_URL, OPERATOR_PHONE, MEMBER_PHONE, CHAIN_ID, ARTIFACTS } = process.env;
const shot = async (page, name) => {
  const path = `${ARTIFACTS}/${name}.png`;
  await page.screenshot({ path, fullPage: true });
  say("SCREENSHOT", path);
};

const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  // Chromium reports what a Content-Security-Policy refused on the console.
  let cspViolations = 0;
  page.on("console", message => { if (message.text().includes("Content Security Policy")) cspViolations++; });
  await signIn(page, BOARD_URL, OPERATOR_PHONE);

  // Members: find her by her phone written the domestic way, open her profile.
  await page.click('a[data-go="members"]');
  await page.fill("#member-phone", "8" + MEMBER_PHONE.slice(2));
  await page.click("#find");
  await page.waitForSelector("#members tr[data-member]");
  say("MEMBERS_FOUND", await page.$$eval("#members tr[data-member]", rows => rows.length));
  await page.click("#members tr[data-member] a");
  await page.waitForSelector("#member-balance");
  say("MEMBER_BALANCE", await page.textContent("#member-balance"));
  say("LEDGER_KINDS", (await page.$$eval("#ledger tr[data-entry] td:nth-child(2)", cells => cells.map(c => c.textContent))).join(","));
  await page.fill("#block-reason", "Проверка с доски");
  await page.click("#block");
  await page.waitForSelector('#member-status[data-blocked="true"]');
  say("MEMBER_STATUS", await page.textContent("#member-status"));
  await shot(page, "member-blocked");
  await page.click("#unblock");
  await page.waitForSelector('#member-status[data-blocked="false"]');
  say("MEMBER_UNBLOCKED", "1");

  // Businesses and their integrations' health.
  await page.click('a[data-go="businesses"]');
  await page.waitForSelector("#businesses tr[data-integration]");
  say("INTEGRATIONS", (await page.$$eval("#businesses tr[data-integration]", rows => rows.map(r => r.dataset.status))).join(","));
  await shot(page, "businesses");

  // Promo chains: pause one.
  await page.click('a[data-go="chains"]');
  await page.waitForSelector(`#chains tr[data-chain="${CHAIN_ID}"][data-active="true"]`);
  await page.click(`button[data-toggle="${CHAIN_ID}"]`);
  await page.waitForSelector(`#chains tr[data-chain="${CHAIN_ID}"][data-active="false"]`);
  say("CHAIN_PAUSED", "1");
  await shot(page, "promo-chains");

  // The audit log, filtered to the chain.
  await page.click('a[data-go="audit"]');
  await page.waitForSelector("#audit");
  await page.fill("#audit-target", CHAIN_ID);
  await page.click("#audit-apply");
  await page.waitForSelector('#audit[data-filter^="target="] tr[data-action]');
  say("AUDIT_ACTIONS", (await page.$$eval("#audit tr[data-action]", rows => rows.map(r => r.dataset.action))).join(","));
  await shot(page, "audit");

  // No script of the page was refused by its Content-Security-Policy along the way.
  say("CSP_VIOLATIONS", cspViolations);
} finally {
  await browser.close();
}
