// Browser test of the apiary dashboard in headless Chromium (playwright-core, Debian's chromium).
// Run by crates/apiary-core/tests/it/http_browser.rs against a running `apiary up`; inputs come
// from the environment, every page is screenshotted, and a JSON summary is printed last.
import { chromium } from 'playwright-core';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const URL_BASE = process.env.APIARY_URL;
const TOKEN = process.env.APIARY_TOKEN;
const WEB = process.env.APIARY_WEB_POT;      // host:port of the web service
const SMTP = process.env.APIARY_SMTP_POT;    // host:port of the SMTP service (optional)
const SHOTS = process.env.APIARY_SCREENSHOTS;
const CHROMIUM = process.env.APIARY_CHROMIUM || '/usr/bin/chromium';
if (!URL_BASE || !TOKEN || !WEB || !SHOTS) throw new Error('APIARY_URL, APIARY_TOKEN, APIARY_WEB_POT and APIARY_SCREENSHOTS are required');
mkdirSync(SHOTS, { recursive: true });

const WAIT = 15000;
const summary = {};
const problems = [];

function curl(...args) {
  return execFileSync('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '5', ...args]).toString();
}

function smtpSession() {
  // A real SMTP exchange with a login, as a spam bot would do it.
  if (!SMTP) return Promise.resolve();
  const [host, port] = [SMTP.slice(0, SMTP.lastIndexOf(':')), Number(SMTP.slice(SMTP.lastIndexOf(':') + 1))];
  const lines = ['EHLO bot.example', 'AUTH PLAIN ' + Buffer.from('\0admin\0Summer2024!').toString('base64'), 'MAIL FROM:<a@b.example>', 'QUIT'];
  return new Promise((resolve) => {
    const s = net.connect(port, host);
    let i = 0;
    s.on('data', () => { if (i < lines.length) s.write(lines[i++] + '\r\n'); });
    s.on('close', resolve);
    s.on('error', resolve);
    setTimeout(() => { s.destroy(); resolve(); }, 5000);
  });
}

async function shot(page, name) {
  await page.waitForTimeout(150);
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: false });
}

// A fresh profile per run (playwright wants it as the persistent context's directory rather
// than as --user-data-dir).
const profile = mkdtempSync(path.join(os.tmpdir(), 'apiary-chromium-'));
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  viewport: { width: 1400, height: 900 },
  // Playwright's waitForFunction evaluates strings, which the dashboard's CSP forbids; the XSS
  // check below therefore tests the rendering itself (text, never markup), not the CSP.
  bypassCSP: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

try {
  const page = ctx.pages()[0] || await ctx.newPage();
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  page.on('console', (m) => { if (m.type() === 'error' && !m.text().includes('401')) problems.push('console: ' + m.text()); });

  // Login page (no session yet); a wrong token is refused.
  await page.goto(URL_BASE + '/');
  await page.waitForSelector('#login:not([hidden])', { timeout: WAIT });
  await page.fill('#login-token', 'apiary_wrong');
  await page.click('#login-form button');
  await page.waitForFunction(() => document.getElementById('login-error').textContent.includes('invalid'), null, { timeout: WAIT });
  await page.fill('#login-token', '');
  await shot(page, 'login');

  // Log in with the URL `apiary up` prints; the token must leave the address bar.
  await page.goto(`${URL_BASE}/#token=${TOKEN}`);
  await page.waitForSelector('#app:not([hidden])', { timeout: WAIT });
  await page.waitForFunction(() => !location.hash.includes('token'), null, { timeout: WAIT });
  summary.user = await page.textContent('#who');

  // Live stream: a real client hits the pot; its request appears in the table.
  await page.click('nav a[data-page=live]');
  await page.waitForFunction(() => document.getElementById('live-status').textContent.startsWith('connected'), null, { timeout: WAIT });
  const marker = `apiary-live-${Date.now()}`;
  const t0 = Date.now();
  curl('-A', 'Mozilla/5.0 zgrab/0.x', `http://${WEB}/${marker}?id=1`);
  await page.waitForFunction((m) => document.getElementById('live-rows').textContent.includes(m), marker, { timeout: WAIT, polling: 'raf' });
  summary.live_latency_ms = Date.now() - t0;

  // More traffic for the other pages: form and basic-auth logins, scans, an SMTP session.
  curl('-d', 'log=admin&pwd=admin123', `http://${WEB}/wp-login.php`);
  curl('-u', 'root:toor', `http://${WEB}/manager/html`);
  curl('-u', 'admin:password', `http://${WEB}/cgi-bin/luci`);
  curl('-A', '<img src=x id=pwned onerror="window.__pwned=true">', `http://${WEB}/xss-probe`);
  for (const p of ['/.env', '/phpmyadmin/', '/boaform/admin/formLogin', '/.git/config']) curl(`http://${WEB}${p}`);
  await smtpSession();
  await page.waitForFunction(() => document.getElementById('live-rows').textContent.includes('.git/config'), null, { timeout: WAIT });
  await shot(page, 'live');

  // Filter as you type: only matching rows stay; a filter nothing matches empties the table.
  await page.fill('#live-filter', marker);
  const rows = await page.$$eval('#live-rows tr', (trs) => trs.map((t) => t.textContent));
  if (!rows.length || !rows.every((t) => t.includes(marker))) problems.push(`filter kept ${JSON.stringify(rows)}`);
  summary.filtered_rows = rows.length;
  await page.fill('#live-filter', 'no-such-thing-anywhere');
  const none = await page.$$eval('#live-rows tr', (trs) => trs.length);
  if (none !== 0) problems.push(`non-matching filter left ${none} rows`);
  await page.fill('#live-filter', 'http.request');
  await shot(page, 'live-filtered');
  await page.fill('#live-filter', '');

  // Open the session of the marked request from the live table.
  await page.click(`#live-rows tr:has-text("${marker}")`);
  await page.waitForFunction(() => location.hash.startsWith('#/session/'), null, { timeout: WAIT });
  await page.waitForFunction(() => document.querySelectorAll('#session-rows tr').length >= 3, null, { timeout: WAIT });
  const kinds = await page.$$eval('#session-rows tr td:nth-child(3)', (tds) => tds.map((t) => t.textContent));
  if (!kinds.includes('session.open') || !kinds.includes('http.request')) problems.push(`session kinds ${kinds}`);
  summary.session_kinds = kinds;
  await page.click('#session-rows tr:has-text("http.request")');
  await page.waitForFunction((m) => document.getElementById('session-json').textContent.includes(m), marker, { timeout: WAIT });
  await shot(page, 'session');

  // Search by source and kind, then the JSON detail of one result.
  await page.goto(`${URL_BASE}/#/search`);
  await page.fill('#search-form input[name=src_ip]', '127.0.0.1');
  await page.fill('#search-form input[name=kind]', 'auth.attempt');
  await page.click('#search-form button[type=submit]');
  await page.waitForFunction(() => document.querySelectorAll('#search-rows tr').length >= 3, null, { timeout: WAIT });
  await page.click('#search-rows tr:has-text("root")');
  await page.waitForFunction(() => document.getElementById('detail-json').textContent.includes('"username": "root"'), null, { timeout: WAIT });
  await shot(page, 'search');

  // Nodes: the local node is connected; a command runs on it and its result is shown.
  await page.goto(`${URL_BASE}/#/nodes`);
  await page.waitForSelector('#nodes-rows tr:has-text("local")', { timeout: WAIT });
  const nodeRow = await page.textContent('#nodes-rows tr:has-text("local")');
  if (!nodeRow.includes('yes')) problems.push(`local node not connected: ${nodeRow}`);
  await shot(page, 'nodes');
  await page.click('#nodes-rows tr:has-text("local")');
  await page.waitForFunction(() => document.getElementById('node-name').textContent.includes('local'), null, { timeout: WAIT });
  await page.selectOption('#cmd-type', 'GetPotMetrics');
  await page.fill('#cmd-pot', 'default');
  await page.click('#cmd-form button');
  await page.waitForSelector('#cmd-result.s-done', { timeout: WAIT });
  summary.command_result = await page.textContent('#cmd-result');
  if (!summary.command_result.includes('accepted')) problems.push(`command result ${summary.command_result}`);
  await page.waitForSelector('#node-cmds tr:has-text("GetPotMetrics")', { timeout: WAIT });
  await shot(page, 'node');

  // Overview: the attack shows in the top lists.
  await page.goto(`${URL_BASE}/#/overview`);
  await page.waitForFunction(() => document.getElementById('ov-sources-t').textContent.includes('127.0.0.1'), null, { timeout: WAIT });
  await page.waitForFunction(() => document.getElementById('ov-creds-t').textContent.includes('root / toor'), null, { timeout: WAIT });
  // With a GeoIP database (the test writes one): source countries and dots on the map.
  await page.waitForSelector('#ov-geo:not([hidden]) #ov-map circle', { timeout: WAIT });
  summary.map_dots = await page.locator('#ov-map circle').count();
  summary.countries = await page.textContent('#ov-countries-t');
  await shot(page, 'overview');
  await page.locator('#ov-geo').scrollIntoViewIfNeeded();
  await shot(page, 'overview-map');

  // Enrollment: a QR code drawn by the Core.
  await page.goto(`${URL_BASE}/#/enroll`);
  await page.fill('#enroll-form input[name=name]', 'sensor-berlin-2');
  await page.click('#enroll-form button');
  await page.waitForSelector('#enroll-qr svg', { timeout: WAIT });
  await shot(page, 'enroll');

  // Alerts: digests of the last windows.
  await page.goto(`${URL_BASE}/#/alerts`);
  await page.waitForSelector('#alerts .card table', { timeout: WAIT });
  await shot(page, 'alerts');

  // Attacker strings are text, never markup: nothing injected ran.
  await page.goto(`${URL_BASE}/#/live`);
  await page.fill('#live-filter', 'xss-probe');
  await page.waitForFunction(() => document.getElementById('live-rows').textContent.includes('<img src=x id=pwned'), null, { timeout: WAIT });
  const injected = await page.evaluate(() => window.__pwned === true || document.getElementById('pwned') !== null);
  if (injected) problems.push('attacker markup became part of the page');
} finally {
  await ctx.close();
}

summary.problems = problems;
console.log(JSON.stringify(summary));
process.exit(problems.length ? 1 : 0);
