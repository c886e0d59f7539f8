#!/usr/bin/env node
// darts-links.js --base URL --user U --machine M --out DIR [--timeout MS]
// The connect page's `#links=` fragment in Debian's headless Chromium (playwright-core):
// log in (the test server has no authentication: a name, no password) and Create, keep
// the session's genuine link, then open the connect page with crafted fragments (other
// schemes, origins, pages, parameters, an SVG with a handler) and with the genuine link. Prints one JSON line of what the page showed for each; exit 0 when every
// step ran (the test judges what was shown).
'use strict';
const path = require('path');
const { chromium } = require('playwright-core');

const args = process.argv.slice(2);
const opt = (name, dflt) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : dflt; };
const base = opt('--base');
const user = opt('--user');
const machine = opt('--machine');
const outDir = opt('--out');
const timeout = Number(opt('--timeout', 90000));

const res = { steps: [], console_errors: [], crafted: [] };

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  let rc = 0;
  let page = null;
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    page = await context.newPage();
    page.on('console', (m) => { if (m.type() === 'error') res.console_errors.push(m.text()); });
    page.on('pageerror', (e) => res.console_errors.push(String(e)));
    page.on('response', (r) => {
      if (r.status() >= 400) (res.failed_requests = res.failed_requests || []).push(`${r.request().method()} ${r.url()} ${r.status()}`);
    });
    page.on('dialog', (d) => { res.dialogs = (res.dialogs || 0) + 1; d.dismiss(); });

    await page.goto(base);
    await page.waitForSelector(`#machine option[value="${machine}"]`, { state: 'attached', timeout });
    await page.fill('#user', user);
    await page.selectOption('#machine', machine);
    await page.click('#create');
    await page.waitForURL(/\/connect\/[^/#]+$/, { timeout });
    await page.waitForSelector('#connect', { state: 'visible', timeout });
    const connectPage = page.url();
    res.genuine = await page.getAttribute('#connect', 'href');
    res.steps.push('create');

    // What the page shows after opening it with `fragment` and no links kept.
    const shown = async (fragment) => {
      await page.evaluate(() => sessionStorage.clear());
      await page.goto('about:blank');
      await page.goto(connectPage + '#links=' + encodeURIComponent(JSON.stringify(fragment)));
      await page.waitForSelector('#card', { state: 'visible', timeout });
      return {
        connect_hidden: await page.isHidden('#connect'),
        connect_href: await page.getAttribute('#connect', 'href'),
        full_link: await page.inputValue('#full-link'),
        view_link: await page.inputValue('#view-link'),
        qr_svg: await page.$$eval('#qr svg', (n) => n.length),
        injected: await page.evaluate(() => window.__darts_injected === true),
      };
    };
    const origin = new URL(base);
    const crafted = [
      'javascript:window.__darts_injected=true',
      'data:text/html,<script>window.__darts_injected=true</script>',
      'https://attacker.example/vnc.html?path=?token=abc',
      '//attacker.example/vnc.html?path=?token=abc',
      `${origin.protocol}//${origin.hostname}:1/vnc.html?path=?token=abc`,
      new URL('manage?path=?token=abc', base).href,
      new URL('vnc.html?path=wss://attacker.example/?token=abc', base).href,
      new URL('vnc.html?path=?token=abc&host=attacker.example', base).href,
    ];
    for (const url of crafted) {
      const s = await shown({ url, view_url: url,
        qr_svg: '<svg xmlns="http://www.w3.org/2000/svg" onload="window.__darts_injected=true"/>' });
      res.crafted.push({ url, ...s });
    }
    res.steps.push('crafted');
    // A genuine link with a crafted view link: the first is kept, the second dropped.
    res.genuine_shown = await shown({ url: res.genuine, view_url: 'javascript:window.__darts_injected=true' });
    res.steps.push('genuine');
    await page.screenshot({ path: path.join(outDir, 'darts-links.png') });
  } catch (e) {
    res.error = String(e && e.message ? e.message : e);
    rc = 1;
    if (page) {
      res.page_url = page.url();
      res.page_text = (await page.textContent('body').catch(() => '')).replace(/\s+/g, ' ').slice(0, 2000);
      await page.screenshot({ path: path.join(outDir, 'darts-links-failure.png'), fullPage: true }).catch(() => {});
    }
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(res));
  process.exit(rc);
})();
