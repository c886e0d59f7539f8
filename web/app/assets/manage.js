// Manage sessions: the user's own sessions (connect, +24 h, stop); for administrators
// also every session, the server card and "stop all".
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const el = Darts.el;
  let me = null;
  let sessions = [];
  const sort = { mine: { key: 'expires', dir: 1 }, all: { key: 'expires', dir: 1 } };

  // Columns: heading, sort key, cell.
  const columns = [
    ['End date', 'expires', (s) => el('span', { title: 'Started ' + Darts.date(s.created) },
      s.expires === 0 ? 'No limit' : Darts.date(s.expires))],
    ['Name', 'name', (s) => (s.node_url ? s.name
      : el('a', { href: 'connect/' + encodeURIComponent(s.name) }, s.name))],
    ['Server', 'node', (s) => s.node || '—'],
    ['Machine', 'machine', (s) => s.machine],
    ['User', 'user', (s) => s.user],
    ['Time left', 'time_left', (s) => (s.time_left === null ? '—' : Darts.duration(s.time_left))],
    ['Viewers', 'viewers', (s) => String(s.viewers)],
    ['CPU', 'cpu', (s) => String(s.cpu)],
    ['Memory (GB)', 'memory_mb', (s) => Darts.gb(s.memory_mb)],
    ['GPU', 'gpu', (s) => s.gpu || '—'],
  ];

  function actions(s) {
    return el('div', { class: 'row-actions' },
      s.oneshot && s.viewers > 0 ? el('span', { class: 'note' }, 'one-shot, in use')
        : el('button', { type: 'button', class: 'secondary', onclick: () => connect(s),
          'aria-label': `Connect to ${s.name}` }, 'Connect'),
      s.extendable ? el('button', { type: 'button', class: 'secondary', onclick: () => extend(s),
        'aria-label': `Add 24 hours to ${s.name}` }, '+24 h') : null,
      el('button', { type: 'button', class: 'danger', onclick: () => stop(s),
        'aria-label': `Stop ${s.name}` }, 'Stop'));
  }

  function table(id, rows) {
    const order = sort[id];
    const sorted = rows.slice().sort((a, b) => {
      const x = a[order.key], y = b[order.key];
      return (x === y ? 0 : (x ?? '') < (y ?? '') ? -1 : 1) * order.dir;
    });
    const head = el('tr', {}, ...columns.map(([label, key]) => el('th', {
      scope: 'col',
      'aria-sort': order.key === key ? (order.dir > 0 ? 'ascending' : 'descending') : 'none',
    }, el('button', { type: 'button', class: 'sort', onclick: () => {
      sort[id] = { key, dir: order.key === key ? -order.dir : 1 };
      draw();
    } }, label))), el('th', { scope: 'col' }, 'Actions'));
    const body = sorted.map((s) => el('tr', {}, ...columns.map(([label, , cell]) =>
      el('td', { 'data-label': label }, cell(s))), el('td', { 'data-label': 'Actions' }, actions(s))));
    $(id).replaceChildren(el('thead', {}, head), el('tbody', {}, ...body));
  }

  function draw() {
    const mine = sessions.filter((s) => s.user === me.name);
    $('mine-section').hidden = false;
    $('mine-empty').hidden = mine.length > 0;
    $('mine').hidden = mine.length === 0;
    table('mine', mine);
    $('all-section').hidden = !me.admin;
    if (me.admin) {
      $('all-count').textContent = `[${sessions.length}]`;
      $('purge').disabled = sessions.length === 0;
      table('all', sessions);
    }
  }

  function card(status) {
    const rows = [
      ['Server', `${status.server || '?'} running ${status.service} ${status.version}`],
      ['CPUs', status.ncpu],
      ['Load (1 min)', status.load1],
      ['Load [0-1]', status.load],
      ['Total memory (GB)', status.memory_total_gb],
      ['Available memory (GB)', status.memory_available_gb],
      ['Active sessions', `${status.sessions} (max ${status.max_sessions})`],
      ['GPUs', Array.isArray(status.gpus) && status.gpus.length
        ? status.gpus.map((g) => `${g.pci} ${g.name}${g.session ? ` — ${g.session} (${g.user})` : ' — free'}`).join('; ')
        : 'none'],
    ];
    $('server-card').replaceChildren(...rows.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v ?? '—')]));
    $('server').hidden = false;
  }

  /** The API path of a session: on a peer, the action runs there for the same user. */
  function path(s, action) {
    const where = s.node_url ? `?node=${encodeURIComponent(s.node)}` : '';
    return `api/sessions/${encodeURIComponent(s.name)}${action ? '/' + action : ''}${where}`;
  }

  function peerNotice(peers) {
    const down = (peers || []).filter((p) => !p.ok);
    $('peers-note').hidden = down.length === 0;
    $('peers-note').textContent = down.length === 0 ? ''
      : `Not shown: sessions on ${down.map((p) => p.url).join(', ')}, which did not answer.`;
  }

  async function refresh() {
    try {
      const { data } = await Darts.api('GET', 'api/sessions');
      sessions = data.sessions;
      peerNotice(data.peers);
      draw();
      if (me.admin) card((await Darts.api('GET', 'api/status')).data);
    } catch (e) {
      Darts.say(Darts.explain(e));
    }
  }

  /** Runs an action with `busyText` shown, then `okText` or the error, then refreshes. */
  async function act(work, okText, busyText) {
    Darts.say(busyText || '', 'info');
    try {
      await work();
      if (okText) Darts.say(okText, 'ok');
    } catch (e) {
      Darts.say(Darts.explain(e));
    }
    await refresh();
  }

  function connect(s) {
    return act(async () => {
      const { data } = await Darts.api('POST', path(s, 'connect'));
      if (data.handoff_url) {
        Darts.links.handOff(data);
        return;
      }
      Darts.links.save(s.name, { url: data.url, view_url: data.view_url, qr_svg: data.qr_svg });
      window.location.assign(new URL('connect/' + encodeURIComponent(s.name), Darts.base));
    });
  }

  function extend(s) {
    return act(() => Darts.api('POST', path(s, 'extend')), `24 hours were added to ${s.name}.`);
  }

  function stop(s) {
    if (!window.confirm(`Stop ${s.name}? Everything in it is lost.`)) return Promise.resolve();
    let status = null;
    return act(async () => {
      status = (await Darts.api('DELETE', path(s, ''))).status;
      Darts.links.forget(s.name);
    }, null, `Stopping ${s.name}…`).then(() => {
      // 202: not gone yet; the list shows it until it is.
      if (status === 200) Darts.say(`${s.name} was stopped.`, 'ok');
      else if (status !== null) Darts.say(`${s.name} is still stopping.`, 'info');
    });
  }

  $('purge').addEventListener('click', () => {
    if (!window.confirm('Stop EVERY session of every user?')) return;
    let done = null;
    act(async () => {
      done = (await Darts.api('POST', 'api/purge')).data;
    }, null, 'Stopping every session…').then(() => {
      if (done === null) return;
      const more = done.stopping > 0 ? ` ${done.stopping} still stopping.` : '';
      Darts.say(`${done.stopped} session(s) stopped.${more}`, 'ok');
    });
  });
  $('refresh').addEventListener('click', refresh);
  $('logout').addEventListener('click', async () => {
    try {
      await Darts.logout();
    } finally {
      window.location.assign(Darts.base);
    }
  });

  async function start() {
    try {
      const config = await Darts.load();
      me = config.user;
    } catch (e) {
      Darts.say(Darts.explain(e));
      return;
    }
    if (!me) {
      Darts.say('Please log in on the start page, then press Manage sessions.');
      return;
    }
    $('who').hidden = false;
    $('logged-user').textContent = me.name + (me.admin ? ' (administrator)' : '');
    await refresh();
  }
  start();
})();
