#!/usr/bin/env node
// darts-proxied.js --base URL --user U --machine M --out DIR --name NAME [--timeout MS]
//                  [--resolve HOST=IP]
// darts behind a reverse proxy, in Debian's headless Chromium (playwright-core): the landing
// page at URL (e.g. http://darts.test:8080/darts/) → log in and Create (open mode: any
// password) → connect page → Connect (noVNC in a new tab) → the guest's screen (canvas
// pixels sampled) → the session as the API describes it, fetched by the page (its
// remote_host is the address darts recorded) → Stop.
// --resolve maps a host name to an address in Chromium, so that the browser uses a real
// name (the Origin and Host darts sees) while everything stays on loopback.
// Screenshots go to DIR as darts-proxied-NAME-*.png. Prints one JSON line of facts; exit 0
// when every step ran, 1 otherwise ({"error": ...}).
'use strict';
const path = require('path');
const { chromium } = require('playwright-core');

const args = process.argv.slice(2);
const opt = (name, dflt) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : dflt; };
const base = opt('--base');
const user = opt('--user');
const machine = opt('--machine');
const outDir = opt('--out');
const name = opt('--name', 'proxy');
const resolve = opt('--resolve', null);
const timeout = Number(opt('--timeout', 120000));

const res = { steps: [], console_errors: [], websockets: [] };
const shot = (p, what) => p.screenshot({ path: path.join(outDir, `darts-proxied-${name}-${what}.png`) });

/** The remote framebuffer: share of non-black pixels. */
function probe() {
  const c = document.querySelector('#noVNC_container canvas') || document.querySelector('canvas');
  if (!c || !c.width) return null;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let lit = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i] | d[i + 1] | d[i + 2]) lit++;
  return { w: c.width, h: c.height, nonblack: Number((lit / (c.width * c.height)).toFixed(4)) };
}

(async () => {
  const t0 = Date.now();
  const flags = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'];
  if (resolve) {
    const [host, ip] = resolve.split('=');
    flags.push(`--host-resolver-rules=MAP ${host} ${ip}`);
  }
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: flags,
  });
  let rc = 0;
  let page = null;
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    // Every websocket any tab opens: noVNC's is made as soon as its page loads.
    context.on('page', (p) => p.on('websocket', (ws) => res.websockets.push(ws.url())));
    page = await context.newPage();
    page.on('dialog', (d) => d.accept()); // "Stop this session?"
    page.on('console', (m) => { if (m.type() === 'error') res.console_errors.push(m.text()); });
    page.on('pageerror', (e) => res.console_errors.push(String(e)));

    // Landing page, drawn from the API (api/config, api/machines) through the proxy.
    const landing = await page.goto(base);
    res.landing_status = landing.status();
    await page.waitForSelector(`#machine option[value="${machine}"]`, { state: 'attached', timeout });
    res.title = await page.title();
    res.steps.push('landing');

    await page.fill('#user', user);
    if (await page.isVisible('#password')) await page.fill('#password', 'any');
    await page.selectOption('#machine', machine);
    await page.click('#create');
    await page.waitForURL(/\/connect\/[^/]+$/, { timeout });
    await page.waitForSelector('#connect', { state: 'visible', timeout });
    res.connect_page = page.url();
    res.session = decodeURIComponent(page.url().split('/').pop());
    res.connect_href = await page.getAttribute('#connect', 'href');
    await shot(page, 'connect');
    res.steps.push('created');

    // noVNC, in a new tab, as a person clicks it.
    const [vnc] = await Promise.all([context.waitForEvent('page', { timeout }), page.click('#connect')]);
    vnc.on('pageerror', (e) => res.console_errors.push(String(e)));
    await vnc.waitForFunction(() => {
      const st = document.getElementById('noVNC_status');
      return document.documentElement.classList.contains('noVNC_connected') ||
        (st !== null && st.classList.contains('noVNC_status_error'));
    }, null, { timeout });
    res.novnc_url = vnc.url();
    res.novnc_status = await vnc.evaluate(() => (document.getElementById('noVNC_status') || {}).textContent || '');
    if (!(await vnc.evaluate(() => document.documentElement.classList.contains('noVNC_connected')))) {
      throw new Error(`noVNC did not connect: ${res.novnc_status}`);
    }
    const first = await vnc.waitForFunction((p) => { const r = eval(p)(); return r && r.nonblack > 0.002 ? r : null; },
      `(${probe.toString()})`, { timeout, polling: 200 });
    res.screen = await first.jsonValue();
    await shot(vnc, 'novnc');
    await vnc.close();
    res.steps.push('guest screen');

    // The session as the API describes it to its owner.
    await page.bringToFront();
    res.session_info = await page.evaluate(async (n) => {
      const r = await fetch(new URL('../api/sessions/' + encodeURIComponent(n), window.location.href),
        { credentials: 'same-origin', headers: { Accept: 'application/json' } });
      return { status: r.status, body: await r.json() };
    }, res.session);
    res.steps.push('api');

    await page.click('#stop');
    await page.waitForSelector('#message:has-text("stopped")', { timeout });
    res.stop_message = (await page.textContent('#message')).trim();
    res.steps.push('stopped');
  } catch (e) {
    res.error = String(e).split('\n')[0];
    rc = 1;
    try {
      if (page) await shot(page, 'failure');
    } catch (_) { /* the page may be gone */ }
  } finally {
    await browser.close();
  }
  res.total_ms = Date.now() - t0;
  console.log(JSON.stringify(res));
  process.exit(rc);
})();
