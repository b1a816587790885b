// Drives the partner page in headless Chromium, as a business owner would: signs in by SMS,
// reads the dashboard (its figures and the chart by day), the staff and the settlement
// statements. Prints `KEY value` lines for the Rust test (tests/system/dashboard.rs); saves
// a screenshot of each page.
import { launch, say, signIn } from "./common.mjs";

const { PARTNER_URL, OWNER_PHONE, SCREENSHOTS } = process.env;

const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on("pageerror", e => say("PAGE_ERROR", e.message));
  page.on("console", m => { if (m.type() === "error") say("CONSOLE_ERROR", m.text()); });
  await signIn(page, PARTNER_URL, OWNER_PHONE, { path: "/partner", ready: "#dashboard" });

  await page.waitForSelector("#sales-chart");
  for (const key of ["sales", "purchases", "members", "bonus_issued", "bonus_redeemed"]) {
    say(`FIGURE_${key}`, (await page.textContent(`[data-figure="${key}"]`)).replace(/\s/g, ""));
  }
  say("CHART_DAYS", await page.getAttribute("#sales-chart", "data-days"));
  say("CHART_BARS", await page.locator("#sales-chart rect.day").count());
  await page.screenshot({ path: `${SCREENSHOTS}/partner-dashboard.png`, fullPage: true });

  await page.click('a[data-go="staff"]');
  await page.waitForSelector("#staff");
  say("STAFF_ROLES", (await page.locator("#staff td.role").allTextContents()).sort().join(","));
  await page.screenshot({ path: `${SCREENSHOTS}/partner-staff.png`, fullPage: true });

  await page.click('a[data-go="statements"]');
  await page.waitForSelector("#statements");
  const first = page.locator("#statements tr[data-period]").first();
  say("STATEMENT_STATUS", await first.locator("td.status").textContent());
  say("STATEMENT_NET", (await first.locator("td.net").textContent()).replace(/\s/g, ""));
  await page.screenshot({ path: `${SCREENSHOTS}/partner-statements.png`, fullPage: true });
  say("SCREENSHOTS", SCREENSHOTS);
} finally {
  await browser.close();
}
