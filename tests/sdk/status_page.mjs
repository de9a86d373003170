// status_page.mjs - drive GET /status in Debian's chromium (headless, puppeteer-core) and check
// that it really updates: a scripted backend failure turns the backend "open" on the page within
// 2 s, and it recovers. Prints one JSON line.
//
// Usage: node status_page.mjs '<scenario JSON>'
//   proxy:      proxy URL (http://127.0.0.1:PORT)
//   key:        the admin key to type into the page
//   apiKey:     the client key for the requests that make the backend fail
//   mock:       URL of the llm-mock behind the backend that fails (its /_mock/ admin API)
//   backend:    that backend's name; alias: the alias whose first route it is
//   openMs:     the breaker's open timeout (ms); failures: consecutive failures that open it
//   gapMs:      wait between the failing requests (the cooldown, so each one reaches the backend)
//   chromium:   browser executable; screenshot: PNG path
// Output: {"ok":bool, "steps":{...ms}, "violations":[urls not on 127.0.0.1], "console":[errors],
//          "error":"..."}
import puppeteer from 'puppeteer-core';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const sc = JSON.parse(process.argv[2]);
const out = { ok: false, steps: {}, violations: [], console: [] };

async function chat() {
  const r = await fetch(`${sc.proxy}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${sc.apiKey}` },
    body: JSON.stringify({ model: sc.alias, messages: [{ role: 'user', content: 'hi' }] }),
  });
  await r.text();
  return r.status;
}

async function stateOf(page) {
  return page.$eval(`tr[data-backend="${sc.backend}"]`, (tr) => tr.dataset.state).catch(() => null);
}

async function waitState(page, want, ms) {
  const t0 = Date.now();
  await page.waitForSelector(`tr[data-backend="${sc.backend}"][data-state="${want}"]`, { timeout: ms });
  return Date.now() - t0;
}

let browser;
try {
  browser = await puppeteer.launch({
    executablePath: sc.chromium,
    headless: true,
    userDataDir: mkdtempSync(join(tmpdir(), 'lp-chromium-')),
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--no-default-browser-check',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--disable-dev-shm-usage'],
  });
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 800 });
  await page.setRequestInterception(true);
  page.on('request', (req) => {
    const u = new URL(req.url());
    if (u.protocol === 'data:' || u.hostname === '127.0.0.1') return req.continue();
    out.violations.push(req.url());
    return req.abort();
  });
  page.on('console', (m) => { if (m.type() === 'error') out.console.push(m.text()); });
  page.on('pageerror', (e) => out.console.push(String(e)));

  await page.goto(`${sc.proxy}/status`, { waitUntil: 'domcontentloaded' });
  await page.waitForSelector('#key', { visible: true, timeout: 5000 });
  await page.type('#key', sc.key);
  await page.click('#connect');
  out.steps.first_render_ms = await waitState(page, 'closed', 5000);
  // The key is in sessionStorage, never in the URL.
  out.key_in_url = page.url().includes(sc.key);
  out.key_in_session = await page.evaluate(() => sessionStorage.getItem('lp-admin-key') !== null);

  // Script the failure: the backend answers 500 until the breaker opens.
  const steps = Array.from({ length: sc.failures }, () => ({
    status: 500, body: { error: { message: 'scripted failure', type: 'server_error' } } }));
  await fetch(`${sc.mock}/_mock/script`, { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ responses: steps }) });
  // Spaced by the cooldown: a cooling route is skipped, and only tries count for the breaker.
  for (let i = 0; i < sc.failures; i++) {
    if (i) await new Promise((r) => setTimeout(r, sc.gapMs || 0));
    await chat();
  }
  out.steps.open_ms = await waitState(page, 'open', 2000);
  out.failovers_shown = await page.$$eval('#failovers tbody tr', (r) => r.length);
  await page.screenshot({ path: sc.screenshot, fullPage: true });

  // Recovery: after the open timeout the breaker is half-open; a good request closes it.
  await new Promise((r) => setTimeout(r, sc.openMs + 100));
  let closed = false;
  const t0 = Date.now();
  while (!closed && Date.now() - t0 < 5000) {
    await chat();
    closed = (await stateOf(page)) === 'closed';
    if (!closed) {
      try {
        await waitState(page, 'closed', 1200);
        closed = true;
      } catch { /* not yet: another request */ }
    }
  }
  out.steps.recover_ms = Date.now() - t0;
  out.recovered = closed;
  // The theme switch works and the page still renders.
  await page.click('#theme');
  out.theme_dark_or_light = await page.evaluate(() =>
    document.documentElement.classList.contains('dark') || document.documentElement.classList.contains('light'));
  out.ok = closed && out.violations.length === 0 && out.console.length === 0;
} catch (e) {
  out.error = String(e && e.stack || e);
} finally {
  if (browser) await browser.close().catch(() => {});
  process.stdout.write(JSON.stringify(out) + '\n');
}
