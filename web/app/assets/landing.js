// The landing page: log in (with the mailed sign-in code when the server asks for one),
// choose a machine and its size, Create (then the connect page) or Manage sessions.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const form = $('desktop');
  const buttons = [$('create'), $('manage')];
  // API field name → the form field's error line.
  const errorLines = {
    user: 'user-error', machine: 'machine-error', cpu: 'cpu-error',
    memory: 'memory-error', lifetime: 'lifetime-error', gpu: 'gpu-error', code: 'mfa-error',
  };
  const inputs = {
    user: 'user', machine: 'machine', cpu: 'cpu', memory: 'memory', lifetime: 'snapshot_lifetime', gpu: 'gpu',
    code: 'mfa-code',
  };
  // A login waits for its sign-in code (the server answered `mfa_required`).
  let mfaPending = false;

  function fill(select, values, label, preferred) {
    select.replaceChildren(...values.map((v) => Darts.el('option', { value: String(v) }, label(v))));
    const pick = values.find((v) => Number(v) === Number(preferred));
    if (pick !== undefined) select.value = String(pick);
  }

  function showLogin(user) {
    $('credentials').hidden = !!user || mfaPending;
    $('mfa').hidden = !!user || !mfaPending;
    $('logged-in').hidden = !user;
    $('logged-user').textContent = user ? user.name : '';
  }

  /** The sign-in code step (`note`: the server's words), or back to user and password. */
  function showMfa(note) {
    mfaPending = !!note;
    $('mfa-note').textContent = note || '';
    $('mfa-code').value = '';
    showLogin(null);
    (mfaPending ? $('mfa-code') : $('user')).focus();
  }

  function clearErrors() {
    for (const [field, id] of Object.entries(errorLines)) {
      $(id).hidden = true;
      $(id).textContent = '';
      const input = $(inputs[field]);
      if (input) input.removeAttribute('aria-invalid');
    }
    Darts.say('');
  }

  function showError(e) {
    const line = e.field && errorLines[e.field];
    if (line) {
      $(line).textContent = e.message;
      $(line).hidden = false;
      const input = $(inputs[e.field]);
      input.setAttribute('aria-invalid', 'true');
      input.focus();
    } else {
      Darts.say(Darts.explain(e));
    }
  }

  let ticker = null;
  function progress(text, counting) {
    clearInterval(ticker);
    $('progress').hidden = !text;
    if (!text) return;
    const started = performance.now();
    const draw = () => {
      const s = Math.round((performance.now() - started) / 1000);
      $('progress-text').textContent = counting && s > 0 ? `${text} (${s} s)` : text;
    };
    draw();
    if (counting) ticker = setInterval(draw, 1000);
  }

  /** Sends the sign-in code; false when the user must do something first. */
  async function sendCode() {
    const code = $('mfa-code').value.trim();
    if (!code) {
      showError({ field: 'code', message: 'Enter the code from the e-mail.' });
      return false;
    }
    progress('Checking the code…', false);
    try {
      await Darts.loginMfa(code);
    } catch (e) {
      progress('');
      if (e.code === 'mfa_wrong_code') e.field = 'code';
      // Expired, used up or gone: the password must be typed again.
      else if (e.code.startsWith('mfa_')) showMfa(null);
      throw e;
    }
    mfaPending = false;
    await Darts.load();
    showLogin(Darts.config.user);
    return true;
  }

  /** Logs in unless already logged in; false when the user must do something first. */
  async function ensureLogin() {
    if (Darts.config.user) return true;
    if (mfaPending) return sendCode();
    const user = $('user').value.trim();
    if (!user) {
      showError({ field: 'user', message: 'Enter your user name.' });
      return false;
    }
    progress('Logging in…', false);
    const r = await Darts.login(user, $('password').value);
    if (r.status === 202) {
      progress('');
      $('password').value = '';
      if (r.data.code === 'mfa_required') showMfa(r.data.message);
      else Darts.say(r.data.message, 'info');
      return false;
    }
    $('password').value = '';
    await Darts.load();
    showLogin(Darts.config.user);
    return true;
  }

  async function create(event) {
    event.preventDefault();
    clearErrors();
    await Darts.busy(buttons, async () => {
      try {
        if (!(await ensureLogin())) return;
        progress('Starting your machine… this takes a few seconds', true);
        // An empty choice list leaves the field out: the server's default applies.
        const number = (id) => ($(id).value === '' ? undefined : Number($(id).value));
        const body = {
          machine: $('machine').value,
          cpu: number('cpu'),
          memory: number('memory'),
          lifetime: number('snapshot_lifetime'),
          gpu: $('gpu').checked,
          oneshot: $('oneshot').checked,
          view_clipboard: $('view-clipboard').checked,
        };
        const { data } = await Darts.api('POST', 'api/sessions', body);
        if (data.handoff_url) {
          // Another server had room: its connect page, logged in there by the hand-off.
          progress(`Your machine is ready on ${data.node}.`, false);
          Darts.links.handOff(data);
          return;
        }
        Darts.links.save(data.session.name, { url: data.url, view_url: data.view_url, qr_svg: data.qr_svg });
        progress('Your machine is ready.', false);
        window.location.assign(new URL('connect/' + encodeURIComponent(data.session.name), Darts.base));
      } catch (e) {
        progress('');
        showError(e);
      }
    });
  }

  async function manage() {
    clearErrors();
    await Darts.busy(buttons, async () => {
      try {
        if (await ensureLogin()) window.location.assign(new URL('manage', Darts.base));
      } catch (e) {
        progress('');
        showError(e);
      }
    });
  }

  async function start() {
    let config;
    try {
      config = await Darts.load();
    } catch (e) {
      Darts.say(Darts.explain(e));
      return;
    }
    const l = config.layout;
    const machines = config.machines;
    if (machines.length === 0) {
      $('machine').replaceChildren(Darts.el('option', { value: '' }, '[ No machine has been configured yet ]'));
      $('create').disabled = true;
      buttons.splice(0, 1);
    } else {
      $('machine').replaceChildren(...machines.map((m) =>
        Darts.el('option', { value: m.name, selected: m.name === config.defaults.machine }, m.description || m.name)));
    }
    fill($('cpu'), l.cpu, (v) => String(v), config.defaults.cpu);
    fill($('memory'), l.memory, (v) => String(v), config.defaults.memory);
    fill($('snapshot_lifetime'), l.lifetime, (d) => (d === 0 ? 'No limit' : d === 1 ? '1 day' : `${d} days`),
      config.defaults.lifetime);
    $('gpu-field').hidden = !l.gpu;
    $('oneshot-field').hidden = !l.oneshot;
    if (l.oneshot) $('oneshot').checked = true;
    $('open-note').hidden = !config.auth.open;
    $('password-field').hidden = config.auth.open;
    const terms = $('terms');
    terms.innerHTML = l.terms; // the operator's HTML (or the built-in text)
    terms.prepend(Darts.el('span', { class: 'asterisk' }, '(*) '));
    showLogin(config.user);
  }

  form.addEventListener('submit', create);
  $('mfa-restart').addEventListener('click', () => {
    clearErrors();
    showMfa(null);
  });
  $('manage').addEventListener('click', manage);
  $('logout').addEventListener('click', async () => {
    try {
      await Darts.logout();
      await Darts.load();
      showLogin(null);
      $('user').focus();
    } catch (e) {
      Darts.say(Darts.explain(e));
    }
  });
  $('show-password').addEventListener('click', () => {
    const p = $('password');
    const show = p.type === 'password';
    p.type = show ? 'text' : 'password';
    $('show-password').setAttribute('aria-pressed', String(show));
    $('show-password').textContent = show ? 'Hide' : 'Show';
    $('show-password').title = show ? 'Hide the password' : 'Show the password';
  });
  start();
})();
