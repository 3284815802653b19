// Drives the dashboard in a running Chromium for tests/dashboard.rs, through Playwright over the
// DevTools protocol. Usage: node dashboard.mjs <devtools endpoint> <dashboard url> <screenshot dir>
//
// It prints one line per step on stdout, `<kind> <json>`:
//   live    the page is connected to the hub as a viewer: the test may now act (a device, a
//           failed build, device logs, a hot reload);
//   result  what the page shows once all of that arrived, measured at 1200 and 420 px wide;
//   error   anything that went wrong.
// The assertions are the test's; this script only looks. It never outlives its own time limit.

import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { chromium } = require(process.env.PLAYWRIGHT_CORE);
const [endpoint, url, screenshots] = process.argv.slice(2);
const say = (kind, value) => process.stdout.write(`${kind} ${JSON.stringify(value ?? null)}\n`);
const limit = setTimeout(() => {
  say("error", "the driver's time limit (60 s) passed");
  process.exit(3);
}, 60_000);

// Where a block sits on the page, in page coordinates.
const layout = () => {
  const box = (node) => {
    const r = node.getBoundingClientRect();
    return { id: node.id, top: r.top + scrollY, bottom: r.bottom + scrollY, left: r.left, right: r.right };
  };
  const cards = Array.from(document.querySelectorAll(".card, .warning")).filter((n) => n.getClientRects().length > 0);
  return {
    innerWidth,
    clientWidth: document.documentElement.clientWidth,
    scrollWidth: document.documentElement.scrollWidth,
    blocks: Array.from(document.querySelector("main").children).filter((n) => n.getClientRects().length > 0).map(box),
    cards: cards.map(box),
  };
};

const browser = await chromium.connectOverCDP(endpoint);
try {
  const page = await browser.contexts()[0].newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  await page.setViewportSize({ width: 1200, height: 900 });
  await page.goto(url);
  await page.waitForFunction(() => document.getElementById("live")?.textContent === "live", null, { timeout: 15_000 });
  say("live");

  await page.waitForFunction(() =>
    document.getElementById("build-state").textContent === "Build failed"
      && document.querySelectorAll("#reloads li").length >= 1
      && document.querySelectorAll("#logs .log").length >= 4, null, { timeout: 30_000 });
  const text = (selector) => page.$eval(selector, (n) => n.textContent);
  const shown = (selector) => page.$eval(selector, (n) => n.getClientRects().length > 0);
  const logs = () => page.$$eval("#logs .log", (rows) => rows.map((r) => ({
    level: r.dataset.level, text: r.querySelector(".msg").textContent, shown: !r.hidden,
  })));
  const result = {
    live: await text("#live"),
    warning: await shown("#loopback-warning"),
    build: {
      state: await text("#build-state"),
      error: await text("#build-error-line"),
      diagnostic: await text("#build-diagnostic"),
      diagnosticShown: await shown("#build-diagnostic"),
    },
    reloads: await page.$$eval("#reloads li", (items) => items.map((li) => li.textContent)),
    logs: await logs(),
  };
  await page.selectOption("#level", "warn");
  result.logsFromWarn = await logs();
  result.logCount = await text("#log-count");
  await page.selectOption("#level", "verbose");

  result.wide = await page.evaluate(layout);
  await page.screenshot({ path: `${screenshots}/dashboard-1200.png`, fullPage: true });
  await page.setViewportSize({ width: 420, height: 900 });
  result.narrow = await page.evaluate(layout);
  await page.screenshot({ path: `${screenshots}/dashboard-420.png`, fullPage: true });
  result.errors = errors;
  say("result", result);
} catch (e) {
  say("error", String(e && e.stack || e));
} finally {
  clearTimeout(limit);
  await browser.close();
}
