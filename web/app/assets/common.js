// Shared by the darts pages: the API client (login cookie + CSRF header), the page frame
// (title, operator header and footer) and small DOM helpers. No framework, no build step.
'use strict';

const Darts = (() => {
  // The application's base URL (`…/darts/`), from this script's own address, so that the
  // pages work under any prefix and behind a reverse proxy.
  const base = new URL('..', document.currentScript.src);
  let csrf = null;
  let config = null;

  /** An API error: `code` and `message` from the server, `field` for a refused field. */
  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || `The server answered ${status}.`);
      this.status = status;
      this.code = (body && body.code) || 'http_' + status;
      this.field = body && body.field;
      this.retryAfter = body && body.retry_after;
    }
  }

  /** Calls the API; resolves to `{status, data}`, rejects with an ApiError. */
  async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    if (method !== 'GET' && csrf) headers['X-CSRF-Token'] = csrf;
    let response;
    try {
      response = await fetch(new URL(path, base), init);
    } catch (e) {
      throw new ApiError(0, { code: 'network', message: 'The server cannot be reached. Check your connection and try again.' });
    }
    let data = null;
    try {
      data = await response.json();
    } catch (e) {
      data = null;
    }
    if (!response.ok) throw new ApiError(response.status, data);
    return { status: response.status, data };
  }

  /** Loads /api/config, remembers the CSRF token and draws the page frame. */
  async function load() {
    const { data } = await api('GET', 'api/config');
    config = data;
    csrf = data.csrf || null;
    document.title = data.title || 'darts';
    const title = document.getElementById('title');
    if (title && !title.dataset.keep) title.textContent = data.title;
    const header = document.getElementById('site-header');
    if (header) {
      if (data.layout.header) {
        header.innerHTML = data.layout.header; // the operator's own HTML
      } else {
        header.replaceChildren(el('a', { href: base.href, class: 'brand' },
          el('img', { src: new URL('assets/logo.svg', base).href, alt: '', width: '40', height: '40' }),
          el('span', {}, 'darts')));
      }
    }
    const footer = document.getElementById('site-footer');
    if (footer) {
      if (data.layout.footer) {
        footer.innerHTML = data.layout.footer;
      } else {
        footer.replaceChildren(el('p', {}, 'Remote desktops in your browser — ',
          el('a', { href: base.href }, 'darts'), ` ${data.version || ''}`));
      }
    }
    return data;
  }

  /** Logs in; resolves to the API's answer (`status` 202: a login link or, with
   *  `code` `mfa_required`, a sign-in code was mailed). */
  async function login(user, password) {
    const r = await api('POST', 'api/login', { user, password });
    // A pending second factor has its own CSRF token, sent back with the code.
    if (r.status === 200 || r.data.csrf) csrf = r.data.csrf;
    return r;
  }

  /** Sends the mailed sign-in code of a pending login; opens the login. */
  async function loginMfa(code) {
    const r = await api('POST', 'api/login/mfa', { code });
    csrf = r.data.csrf;
    return r;
  }

  async function logout() {
    await api('POST', 'api/logout');
    csrf = null;
  }

  /** `el('a', {href: x}, 'text', child)`: an element with attributes and children. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === false || v === null || v === undefined) continue;
      if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : String(c));
    }
    return node;
  }

  /** Shows `text` in the page's message box (`kind`: error, info or ok). */
  function say(text, kind = 'error') {
    const box = document.getElementById('message');
    if (!box) return;
    box.hidden = !text;
    box.className = 'message ' + kind;
    box.textContent = text || '';
    if (text && kind === 'error') box.focus();
  }

  /** Human text for an error. */
  function explain(e) {
    if (e.code === 'rate_limited' && e.retryAfter) {
      return `Too many failed logins. Try again in ${duration(e.retryAfter)}.`;
    }
    if (e.code === 'login_required') return 'Please log in first, on the start page.';
    return e.message;
  }

  /** `3 d 4 h`, `2 h 05 min`, `4 min 10 s`. */
  function duration(s) {
    s = Math.max(0, Math.round(s));
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    if (d > 0) return `${d} d ${h} h`;
    if (h > 0) return `${h} h ${String(m).padStart(2, '0')} min`;
    if (m > 0) return `${m} min ${String(s % 60).padStart(2, '0')} s`;
    return `${s} s`;
  }

  /** Megabytes as GB for people: `0.25`, `4`, `1.5`. */
  function gb(mb) {
    return String(Math.round((mb / 1024) * 100) / 100);
  }

  function date(unix) {
    return new Date(unix * 1000).toLocaleString();
  }

  /** Links of a session kept for this tab only (they hold secrets). */
  const links = {
    save(name, value) {
      sessionStorage.setItem('darts-links:' + name, JSON.stringify(value));
    },
    get(name) {
      try {
        return JSON.parse(sessionStorage.getItem('darts-links:' + name) || 'null');
      } catch (e) {
        return null;
      }
    },
    forget(name) {
      sessionStorage.removeItem('darts-links:' + name);
    },
    /** Follows a peer's one-time hand-off to its connect page, carrying the links in the
     * URL's fragment (never sent to a server; the connect page stores and removes it). */
    handOff(data) {
      const carried = { url: data.url, view_url: data.view_url };
      window.location.assign(data.handoff_url + '#links=' + encodeURIComponent(JSON.stringify(carried)));
    },
    /** Takes links handed over in the fragment by `handOff`: only this server's own
     * link shapes (anyone can send a user a connect page with a fragment of their own). */
    adoptFragment(name) {
      if (!window.location.hash.startsWith('#links=')) return;
      try {
        const value = JSON.parse(decodeURIComponent(window.location.hash.slice(7)));
        const url = value && ownLink(value.url);
        if (url) {
          const viewUrl = ownLink(value.view_url);
          this.save(name, viewUrl ? { url, view_url: viewUrl } : { url });
        }
      } catch (e) {
        // A damaged fragment: "Get a link" still works.
      }
      window.history.replaceState(null, '', window.location.pathname);
    },
  };

  /** `text` when it is a connection link of this server (`<base>vnc.html?…&path=?token=T`,
   * as the API makes them), else null: no other origin, scheme, page or parameter. */
  function ownLink(text) {
    if (typeof text !== 'string' || text.length > 2048) return null;
    let u;
    try {
      u = new URL(text);
    } catch (e) {
      return null;
    }
    const page = new URL('vnc.html', base);
    if (u.origin !== page.origin || u.pathname !== page.pathname || u.hash !== ''
      || u.username !== '' || u.password !== '') return null;
    const allowed = { resize: /^(scale|remote|)$/, autoconnect: /^(true|false)$/, path: /^\?token=[A-Za-z0-9_-]{1,256}$/ };
    for (const [key, value] of u.searchParams) {
      if (!allowed[key] || !allowed[key].test(value)) return null;
    }
    return u.searchParams.has('path') ? u.href : null;
  }

  /** An SVG string from the server (the QR code) as a DOM node, without scripts. */
  function svg(text, label) {
    const doc = new DOMParser().parseFromString(text, 'image/svg+xml');
    const root = doc.documentElement;
    if (root.nodeName !== 'svg') return null;
    root.querySelectorAll('script, foreignObject').forEach((n) => n.remove());
    const node = document.importNode(root, true);
    node.setAttribute('role', 'img');
    node.setAttribute('aria-label', label);
    return node;
  }

  /** Copies `text`; true on success. */
  async function copy(text) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch (e) {
      return false;
    }
  }

  /** Sets the busy state of buttons while `work` runs. */
  async function busy(buttons, work) {
    buttons.forEach((b) => { b.disabled = true; });
    try {
      return await work();
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  return {
    base, api, load, login, loginMfa, logout, el, say, explain, duration, date, gb, links, svg, copy, busy,
    get config() { return config; },
  };
})();
