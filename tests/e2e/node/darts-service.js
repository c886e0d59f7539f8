#!/usr/bin/env node
// darts-service.js --base URL --user U --password P --machine M --out DIR
//                  [--serial FILE] [--maildir DIR] [--timeout MS]
// Drives `darts serve` the way a person does, in Debian's headless Chromium (playwright-core):
// landing page → log in (with the mailed sign-in code when --maildir is given: it is read from
// the SMTP sink's stored mail) → pick the machine → Create → connect page → Connect (noVNC in a
// new tab) → the guest's screen → type a command into the guest → back → Stop → Manage sessions.
// Screenshots of the landing and connect pages at desktop (1280×800) and phone (390×844) sizes,
// of the sign-in code step, of noVNC and of Manage sessions go to DIR; for each page size the
// horizontal overflow (px) is reported.
// --serial: the guest's serial log; the command is typed only once the guest wrote
// E2E-GUEST-READY there, and its output must arrive there too.
// Prints one JSON line of facts; exit 0 when every step ran, 1 otherwise ({"error": ...}).
'use strict';
const fs = require('fs');
const path = require('path');
const { chromium } = require('playwright-core');

const args = process.argv.slice(2);
const opt = (name, dflt) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : dflt; };
const base = opt('--base');
const user = opt('--user');
const password = opt('--password');
const machine = opt('--machine');
const outDir = opt('--out');
const serial = opt('--serial', null);
const maildir = opt('--maildir', null);
const timeout = Number(opt('--timeout', 90000));
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
// `$((6*7))` makes the guest's shell compute something the typed text does not contain.
const COMMAND = 'echo darts-e2e-$((6*7)) | tee /dev/ttyS0\n';
const OUTPUT = 'darts-e2e-42';
const SHIFTED = '~!@#$%^&*()_+{}|:"<>?ABCDEFGHIJKLMNOPQRSTUVWXYZ';

const res = { steps: [], console_errors: [] };
const step = (name) => { res.steps.push(name); };

/** Two animation frames: layout and paint after a resize are done. */
const settled = (page) => page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));

/** Screenshots of `page` at both sizes; how far each overflows horizontally. */
async function shots(page, name) {
  const out = {};
  for (const [size, viewport] of [['desktop', DESKTOP], ['phone', PHONE]]) {
    await page.setViewportSize(viewport);
    await settled(page);
    const file = path.join(outDir, `darts-${name}-${size}.png`);
    await page.screenshot({ path: file, fullPage: true });
    out[size] = {
      file,
      overflow: await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth),
    };
  }
  await page.setViewportSize(DESKTOP);
  await settled(page);
  return out;
}

/** Polls `check` every 200 ms until it returns a truthy value, at most `ms`. */
async function until(what, ms, check) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const fileText = (f) => { try { return fs.readFileSync(f, 'utf8'); } catch (e) { return ''; } };

/** The 8-digit code of the newest mail the SMTP sink stored. */
function mailedCode() {
  const files = fs.readdirSync(maildir).filter((f) => f.endsWith('.eml')).sort();
  if (!files.length) throw new Error(`no mail in ${maildir}`);
  const text = fileText(path.join(maildir, files[files.length - 1]));
  const m = text.match(/^\s*(\d{8})\s*$/m);
  if (!m) throw new Error('no code in the mail');
  return { code: m[1], subject: (text.match(/^Subject: (.*)$/m) || [])[1] || '' };
}

/** The remote framebuffer: share of non-black pixels and which pixel rows are lit. */
function probe() {
  const c = document.querySelector('#noVNC_container canvas') || document.querySelector('canvas');
  if (!c || !c.width) return null;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let lit = 0, rows = 0, lowest = -1;
  for (let y = 0; y < c.height; y++) {
    let rowLit = false;
    for (let x = 0; x < c.width; x++) {
      const i = (y * c.width + x) * 4;
      if (d[i] | d[i + 1] | d[i + 2]) { lit++; rowLit = true; }
    }
    if (rowLit) { rows++; lowest = y; }
  }
  return { w: c.width, h: c.height, nonblack: Number((lit / (c.width * c.height)).toFixed(4)), lit_rows: rows, lowest_lit_row: lowest };
}

/** Types `text` into the focused noVNC canvas, holding Shift where a person would. */
async function typeInto(page, text) {
  for (const ch of text) {
    await page.waitForTimeout(30);
    if (ch === '\n') {
      await page.keyboard.press('Enter');
    } else if (SHIFTED.includes(ch)) {
      await page.keyboard.down('Shift');
      await page.keyboard.type(ch);
      await page.keyboard.up('Shift');
    } else {
      await page.keyboard.type(ch);
    }
  }
}

(async () => {
  const t0 = Date.now();
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  let rc = 0;
  let page = null;
  try {
    const context = await browser.newContext({ viewport: DESKTOP });
    page = await context.newPage();
    page.on('dialog', (d) => d.accept()); // "Stop this session?"
    page.on('console', (m) => { if (m.type() === 'error') res.console_errors.push(m.text()); });
    page.on('pageerror', (e) => res.console_errors.push(String(e)));

    // Landing page, drawn from /api/config.
    await page.goto(base);
    await page.waitForSelector(`#machine option[value="${machine}"]`, { state: 'attached', timeout });
    res.title = await page.title();
    res.landing = await shots(page, 'landing');
    step('landing');

    // Log in and Create in one go, as the page allows.
    await page.fill('#user', user);
    await page.fill('#password', password);
    await page.selectOption('#machine', machine);
    await page.click('#create');
    if (maildir) {
      await page.waitForSelector('#mfa-code', { state: 'visible', timeout });
      res.mfa_note = await page.textContent('#mfa-note');
      res.mfa_credentials_hidden = await page.isHidden('#credentials');
      await page.screenshot({ path: path.join(outDir, 'darts-mfa-desktop.png') });
      const mail = mailedCode();
      res.mfa_subject = mail.subject;
      // A wrong code first: refused next to the field.
      const wrong = mail.code.slice(0, 7) + (mail.code[7] === '0' ? '1' : '0');
      await page.fill('#mfa-code', wrong);
      await page.click('#create');
      await page.waitForSelector('#mfa-error', { state: 'visible', timeout });
      res.mfa_wrong = await page.textContent('#mfa-error');
      await page.fill('#mfa-code', mail.code);
      await page.click('#create');
      step('mfa');
    }
    await page.waitForURL(/\/connect\/[^/]+$/, { timeout });
    await page.waitForSelector('#connect', { state: 'visible', timeout });
    res.session = decodeURIComponent(page.url().split('/').pop());
    res.hello = (await page.textContent('#hello')).trim();
    res.connect_href = await page.getAttribute('#connect', 'href');
    res.qr = (await page.locator('#qr svg').count()) > 0;
    res.connect = await shots(page, 'connect');
    step('connect page');

    // Connect: noVNC opens in a new tab.
    const [vnc] = await Promise.all([context.waitForEvent('page', { timeout }), page.click('#connect')]);
    vnc.on('pageerror', (e) => res.console_errors.push(String(e)));
    await vnc.waitForFunction(() => {
      const st = document.getElementById('noVNC_status');
      return document.documentElement.classList.contains('noVNC_connected') ||
        (st !== null && st.classList.contains('noVNC_status_error'));
    }, null, { timeout });
    res.novnc_status = await vnc.evaluate(() => (document.getElementById('noVNC_status') || {}).textContent || '');
    if (!(await vnc.evaluate(() => document.documentElement.classList.contains('noVNC_connected')))) {
      throw new Error(`noVNC did not connect: ${res.novnc_status}`);
    }
    res.connected_ms = Date.now() - t0;
    const first = await vnc.waitForFunction((p) => { const r = eval(p)(); return r && r.nonblack > 0.002 ? r : null; },
      `(${probe.toString()})`, { timeout, polling: 200 });
    res.first_screen = await first.jsonValue();
    step('guest screen');

    // Type only once the guest's shell reads the keyboard: its init says so on the serial
    // port just before starting the shell, and the first keys after that may still be lost
    // (the shell starting, the USB keyboard waking up). So type `clear` until the screen
    // is cleared down to the prompt's line; from then on the shell has every key.
    if (serial) await until('E2E-GUEST-READY on the serial port', timeout, () => fileText(serial).includes('E2E-GUEST-READY'));
    await vnc.locator('#noVNC_container canvas').first().click();
    const screen = () => vnc.evaluate(`(${probe.toString()})()`);
    res.clears = 0;
    res.before = await until('the guest shell clearing its screen', timeout, async () => {
      await typeInto(vnc, 'clear\n');
      res.clears++;
      return until('a cleared screen', 3000, async () => {
        const now = await screen();
        return now.lowest_lit_row >= 0 && now.lowest_lit_row < 16 ? now : null;
      }).catch(() => null);
    });
    await typeInto(vnc, COMMAND);
    if (serial) {
      await until(`${OUTPUT} on the serial port`, 30000, () => fileText(serial).includes(OUTPUT));
      res.serial_output = true;
    }
    // The screen shows the command line, its output and the next prompt: three lines.
    res.after = await until('three lines on the guest screen', 30000, async () => {
      const r = await screen();
      return r.lowest_lit_row >= 32 ? r : null;
    }).catch(screen);
    await vnc.screenshot({ path: path.join(outDir, 'darts-novnc.png') });
    await vnc.close();
    step('typed');

    // Back on the connect page: Stop.
    await page.bringToFront();
    await page.click('#stop');
    await page.waitForSelector('#message:has-text("stopped")', { timeout });
    res.stop_message = (await page.textContent('#message')).trim();
    res.card_hidden = await page.isHidden('#card');
    step('stopped');

    // Manage sessions: nothing left.
    await page.goto(new URL('manage', base).href);
    await page.waitForSelector('#mine-section', { state: 'visible', timeout });
    res.manage_empty_shown = await page.isVisible('#mine-empty');
    res.manage_rows = await page.locator('#mine tbody tr').count();
    res.manage_mentions_session = (await page.textContent('main')).includes(res.session);
    await page.screenshot({ path: path.join(outDir, 'darts-manage-desktop.png'), fullPage: true });
    step('manage');
  } catch (e) {
    res.error = String(e).split('\n')[0];
    rc = 1;
    try {
      if (page) await page.screenshot({ path: path.join(outDir, 'darts-failure.png'), fullPage: true });
    } catch (_) { /* the page may be gone */ }
  } finally {
    await browser.close();
  }
  res.total_ms = Date.now() - t0;
  console.log(JSON.stringify(res));
  process.exit(rc);
})();
