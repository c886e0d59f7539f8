#!/usr/bin/env node
// darts-nodes.js --base URL_OF_A --user U --machine M --out DIR [--timeout MS]
// Several nodes in Debian's headless Chromium (playwright-core): on node A (full), log in and
// Create; the page follows the hand-off to the peer's connect page, logged in there, with the
// session's Connect link; back on A, Manage sessions lists the session with its server.
// The peers' test certificates are accepted by the browser (their verification between
// nodes is what darts checks). Prints one JSON line of facts; exit 0 when every step ran.
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

const res = { steps: [], console_errors: [] };

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
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ignoreHTTPSErrors: true });
    page = await context.newPage();
    page.on('console', (m) => { if (m.type() === 'error') res.console_errors.push(m.text()); });
    page.on('pageerror', (e) => res.console_errors.push(String(e)));

    await page.goto(base);
    await page.waitForSelector(`#machine option[value="${machine}"]`, { state: 'attached', timeout });
    await page.fill('#user', user);
    if (await page.isVisible('#password')) await page.fill('#password', 'x');
    await page.selectOption('#machine', machine);
    await page.click('#create');
    res.steps.push('create');

    await page.waitForURL(/\/connect\/[^/#]+$/, { timeout });
    await page.waitForSelector('#connect', { state: 'visible', timeout });
    res.connect_page = page.url();
    res.connect_href = await page.getAttribute('#connect', 'href');
    res.user_on_peer = (await page.textContent('#user')).trim();
    await page.screenshot({ path: path.join(outDir, 'darts-nodes-connect.png') });
    res.steps.push('peer connect page');

    await page.goto(new URL('manage', base).toString());
    await page.waitForSelector('#mine tbody tr', { timeout });
    res.manage_servers = await page.$$eval('#mine tbody tr td[data-label="Server"]', (cells) => cells.map((c) => c.textContent.trim()));
    await page.screenshot({ path: path.join(outDir, 'darts-nodes-manage.png'), fullPage: true });
    res.steps.push('manage');
  } catch (e) {
    res.error = String(e && e.message ? e.message : e);
    rc = 1;
    if (page) {
      res.page_url = page.url();
      res.page_text = (await page.textContent('body').catch(() => '')).replace(/\s+/g, ' ').slice(0, 2000);
      await page.screenshot({ path: path.join(outDir, 'darts-nodes-failure.png'), fullPage: true }).catch(() => {});
    }
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(res));
  process.exit(rc);
})();
