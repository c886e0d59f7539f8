// The connect page ("Hello <user> !"): the session's link and QR code, Connect, Share
// (full-control and view-only links), time left, +24 h and Stop. Links are known only
// right after Create or after "Get a link": the server keeps digests, not links.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const name = decodeURIComponent(window.location.pathname.replace(/\/+$/, '').split('/').pop());
  const actions = ['new-links', 'share', 'extend', 'stop'].map($);
  let session = null;
  let deadline = null; // performance.now() when the session ends
  let level = 1;

  function item(...parts) {
    return Darts.el('li', {}, ...parts);
  }

  function drawStatus(links) {
    const s = session;
    const list = [];
    if (level >= 2) {
      list.push(item('Started ', Darts.date(s.created), s.remote_host ? ` from ${s.remote_host}` : ''));
      list.push(item(`Snapshot of ${s.machine} as session ${s.name}`));
      list.push(item(`${s.cpu} CPU, ${Darts.gb(s.memory_mb)} GB memory` + (s.gpu ? `, GPU ${s.gpu}` : '')));
      list.push(item(s.oneshot ? 'One-shot: a single connection; the session ends when it closes.'
        : 'Reconnectable: connect as often as you like while the session lasts.'));
      if (links) list.push(item('Link: ', Darts.el('code', { class: 'url' }, links.url)));
    }
    if (s.viewers > 0) list.push(item(`${s.viewers} viewer${s.viewers > 1 ? 's' : ''} connected now.`));
    $('status').replaceChildren(...list);
  }

  function drawTime() {
    const line = $('time-left');
    if (session.expires === 0 || session.time_left === null) {
      line.textContent = 'This session has no time limit.';
      return;
    }
    const left = Math.max(0, (deadline - performance.now()) / 1000);
    line.replaceChildren('You can use your session until ', Darts.el('strong', {}, Darts.date(session.expires)),
      ` (${Darts.duration(left)} left).`);
  }

  function drawLinks(links) {
    const has = !!links;
    $('connect').hidden = !has;
    $('new-links').hidden = has;
    $('share').hidden = !has || session.oneshot;
    $('qr').hidden = !has || level < 1 || !links.qr_svg;
    if (!has) return;
    $('connect').href = links.url;
    if (links.qr_svg && level >= 1) {
      $('qr').href = links.url;
      const image = Darts.svg(links.qr_svg, 'QR code of the connection link');
      $('qr').replaceChildren(...(image ? [image] : []));
    }
    $('full-link').value = links.url;
    $('view-field').hidden = !links.view_url;
    $('view-link').value = links.view_url || '';
  }

  function draw() {
    const links = Darts.links.get(name);
    const title = Darts.config.title;
    $('title').textContent = level >= 1 ? `${title}: ${session.machine}` : title;
    $('user').textContent = session.user;
    $('extend').hidden = !session.extendable;
    $('notes').hidden = level < 1;
    drawStatus(links);
    drawLinks(links);
    drawTime();
    $('card').hidden = false;
  }

  function setSession(s) {
    session = s;
    deadline = s.time_left === null ? null : performance.now() + s.time_left * 1000;
  }

  function ended(text) {
    Darts.links.forget(name);
    $('card').hidden = true;
    Darts.say(text, 'info');
  }

  async function refresh() {
    try {
      const { data } = await Darts.api('GET', 'api/sessions/' + encodeURIComponent(name));
      setSession(data.session);
      draw();
    } catch (e) {
      if (e.status === 404) ended('This session has ended.');
      else if (e.status !== 0) Darts.say(Darts.explain(e));
    }
  }

  async function act(work) {
    Darts.say('');
    try {
      await Darts.busy(actions, work);
    } catch (e) {
      Darts.say(Darts.explain(e));
    }
  }

  $('new-links').addEventListener('click', () => act(async () => {
    const { data } = await Darts.api('POST', `api/sessions/${encodeURIComponent(name)}/connect`);
    Darts.links.save(name, { url: data.url, view_url: data.view_url, qr_svg: data.qr_svg });
    setSession(data.session);
    draw();
    $('connect').focus();
  }));
  $('share').addEventListener('click', () => {
    const panel = $('share-panel');
    panel.hidden = !panel.hidden;
    $('share').setAttribute('aria-expanded', String(!panel.hidden));
    if (!panel.hidden) $('full-link').select();
  });
  document.querySelectorAll('[data-copy]').forEach((b) => b.addEventListener('click', async () => {
    const input = $(b.dataset.copy);
    const done = await Darts.copy(input.value);
    if (!done) input.select();
    b.textContent = done ? 'Copied' : 'Press Ctrl+C';
    setTimeout(() => { b.textContent = 'Copy'; }, 2000);
  }));
  $('extend').addEventListener('click', () => act(async () => {
    const { data } = await Darts.api('POST', `api/sessions/${encodeURIComponent(name)}/extend`);
    setSession(data.session);
    draw();
    Darts.say('24 hours were added.', 'ok');
  }));
  $('stop').addEventListener('click', () => act(async () => {
    if (!window.confirm('Stop this session? Everything in it is lost.')) return;
    Darts.say('Stopping the session…', 'info');
    await Darts.api('DELETE', 'api/sessions/' + encodeURIComponent(name));
    ended('The session was stopped.');
  }));

  async function start() {
    Darts.links.adoptFragment(name);
    try {
      const config = await Darts.load();
      level = config.layout.level;
      if (!config.user) {
        Darts.say('Please log in on the start page to see this session.');
        return;
      }
    } catch (e) {
      Darts.say(Darts.explain(e));
      return;
    }
    await refresh();
    setInterval(() => { if (session && deadline !== null && !$('card').hidden) drawTime(); }, 1000);
    setInterval(() => { if (!$('card').hidden) refresh(); }, 30000);
  }
  start();
})();
