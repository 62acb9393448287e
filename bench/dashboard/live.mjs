// Live-stream benchmark, browser side: the dashboard's live page in headless Chromium
// (playwright-core from crates/apiary-core/tests/browser, Debian's chromium) while
// bench/dashboard/live.rs feeds the Core. Prints `ready` once the stream is connected, then
// one JSON sample per second of what the page exposes in window.__apiaryLive, then `done`.
import { createRequire } from 'node:module';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '../../crates/apiary-core/tests/browser/package.json'));
const { chromium } = require('playwright-core');

const URL_BASE = process.env.APIARY_URL;
const TOKEN = process.env.APIARY_TOKEN;
const SECONDS = Number(process.env.SAMPLE_SECONDS || 40);
const CHROMIUM = process.env.APIARY_CHROMIUM || '/usr/bin/chromium';
if (!URL_BASE || !TOKEN) throw new Error('APIARY_URL and APIARY_TOKEN are required');

const profile = mkdtempSync(path.join(os.tmpdir(), 'apiary-live-bench-'));
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  viewport: { width: 1400, height: 900 },
  bypassCSP: true, // playwright's evaluate needs it; the page itself is unchanged
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = ctx.pages()[0] || await ctx.newPage();
  await page.goto(`${URL_BASE}/#token=${TOKEN}`);
  await page.waitForSelector('#page-overview:not([hidden])', { timeout: 15000 });
  await page.evaluate(() => { location.hash = '#/live'; });
  await page.waitForFunction(() => /connected/.test(document.getElementById('live-status').textContent) && !/reconnecting/.test(document.getElementById('live-status').textContent), null, { timeout: 15000 });
  // Long tasks (main thread busy > 50 ms) are what a person would feel as the tab stalling.
  await page.evaluate(() => {
    window.__benchLong = { count: 0, ms: 0, max: 0 };
    new PerformanceObserver((l) => {
      for (const e of l.getEntries()) { window.__benchLong.count++; window.__benchLong.ms += e.duration; window.__benchLong.max = Math.max(window.__benchLong.max, e.duration); }
    }).observe({ type: 'longtask', buffered: false });
  });
  console.log('ready');
  for (let i = 0; i < SECONDS; i++) {
    await page.waitForTimeout(1000);
    const s = await page.evaluate(() => {
      const l = window.__apiaryLive;
      return { t: Date.now(), received: l.received, lagged: l.lagged, lag_ms: l.lagMs, frames: l.frames, queue: l.queue.length, rows: document.getElementById('live-rows').childElementCount, long: window.__benchLong };
    });
    console.log(JSON.stringify(s));
  }
  console.log('done');
} finally {
  await ctx.close();
}
