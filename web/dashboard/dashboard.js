// The operator's dashboard: polls the registry's GET /v1/dashboard/state once a second with the
// operator's token (from the login form, relayed by the registry to the auth server, or pasted;
// kept in the tab's sessionStorage) and draws the grid: a map of the stations and the bytes between
// them, each station's engines, the programs' distribution, the hottest segments and the events.
// Served by the registry as /dashboard/dashboard.js (web/README.md). No framework, no build step.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const tokenKey = 'vodgrid.operator-token';
  const svgNs = 'http://www.w3.org/2000/svg';
  // What the page saw, for people reading the console and for tests (tests/browser/dashboard.mjs).
  const seen = { updates: 0, state: null, error: null, loggedIn: false };
  window.vodgridDashboard = seen;
  let timer = null;

  const token = () => sessionStorage.getItem(tokenKey);

  function el(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === 'class') {
        e.className = v;
      } else {
        e.setAttribute(k, v);
      }
    }
    for (const c of children) {
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function svg(tag, attrs = {}, text) {
    const e = document.createElementNS(svgNs, tag);
    for (const [k, v] of Object.entries(attrs)) {
      e.setAttribute(k, v);
    }
    if (text !== undefined) {
      e.textContent = text;
    }
    return e;
  }

  function bytes(n) {
    const units = ['B', 'kB', 'MB', 'GB', 'TB'];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) {
      n /= 1000;
      i += 1;
    }
    return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
  }
  const rate = (n) => `${bytes(n)}/s`;

  function showLogin(why) {
    $('login-why').textContent = why;
    $('login').hidden = false;
    $('board').hidden = true;
    $('logout').hidden = true;
    setStatus('login needed');
  }

  function setStatus(text, stale = false) {
    $('status').textContent = text;
    $('status').classList.toggle('stale', stale);
  }

  // A login: user and password relayed by the registry (POST /v1/login/operator), or a token.
  async function login(ev) {
    ev.preventDefault();
    $('login-error').textContent = '';
    const pasted = $('token').value.trim();
    if (pasted) {
      sessionStorage.setItem(tokenKey, pasted);
    } else {
      let res;
      try {
        res = await fetch('/v1/login/operator', {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ user: $('user').value, password: $('password').value }),
        });
      } catch (e) {
        $('login-error').textContent = 'the registry did not answer';
        return;
      }
      const body = await res.json().catch(() => ({}));
      if (!res.ok) {
        $('login-error').textContent = body.detail || `login refused (HTTP ${res.status})`;
        return;
      }
      sessionStorage.setItem(tokenKey, body.token);
    }
    seen.loggedIn = true;
    $('password').value = '';
    $('token').value = '';
    $('login').hidden = true;
    poll();
  }

  function logout() {
    sessionStorage.removeItem(tokenKey);
    seen.loggedIn = false;
    clearTimeout(timer);
    showLogin('Logged out.');
  }

  async function poll() {
    clearTimeout(timer);
    const t = token();
    let res;
    try {
      res = await fetch('/v1/dashboard/state', {
        cache: 'no-store',
        headers: t ? { Authorization: `Bearer ${t}` } : {},
      });
    } catch (e) {
      seen.error = 'the registry did not answer';
      setStatus(`the registry did not answer; trying again (${new Date().toLocaleTimeString()})`,
        true);
      timer = setTimeout(poll, 1000);
      return;
    }
    if (res.status === 401 || res.status === 403) {
      const body = await res.json().catch(() => ({}));
      sessionStorage.removeItem(tokenKey);
      showLogin(t ? `The login was refused: ${body.detail || res.status}. Log in again.`
        : 'The dashboard needs an operator\'s login.');
      return;
    }
    if (!res.ok) {
      seen.error = `HTTP ${res.status}`;
      setStatus(`the state: HTTP ${res.status}; trying again`, true);
      timer = setTimeout(poll, 1000);
      return;
    }
    const state = await res.json();
    seen.state = state;
    seen.updates += 1;
    seen.error = null;
    $('board').hidden = false;
    $('logout').hidden = !t;
    draw(state);
    setStatus(`updated ${new Date(state.generated_at_ms).toLocaleTimeString()}`);
    timer = setTimeout(poll, state.poll_interval_ms || 1000);
  }

  function draw(state) {
    drawMap(state);
    drawStations(state);
    drawPrograms(state);
    drawHot(state);
    drawEvents(state);
  }

  const directorClass = (s) => (s.director.reachable === null ? 'unknown'
    : s.director.reachable ? 'ok' : 'bad');
  const engineClass = (e) => ({ up: 'ok', down: 'bad' }[e.status] || 'unknown');

  // Stations at their x_km, y_km (y up, as on a map), scaled into the box with a margin.
  function drawMap(state) {
    const map = $('map');
    const w = map.clientWidth || 480;
    const h = map.clientHeight || 340;
    map.setAttribute('viewBox', `0 0 ${w} ${h}`);
    map.replaceChildren();
    const xs = state.stations.map((s) => s.x_km);
    const ys = state.stations.map((s) => s.y_km);
    const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
    const span = Math.max(x1 - x0, y1 - y0, 1);
    const m = 50;
    const scale = Math.min(w - 2 * m, h - 2 * m) / span;
    const pos = {};
    for (const s of state.stations) {
      pos[s.name] = {
        x: m + (s.x_km - x0) * scale + (w - 2 * m - (x1 - x0) * scale) / 2,
        y: h - m - (s.y_km - y0) * scale - (h - 2 * m - (y1 - y0) * scale) / 2,
      };
    }
    // One line per pair of stations; its label sums both directions.
    const pairs = new Map();
    for (const l of state.links) {
      const key = [l.from, l.to].sort().join('\u0000');
      const p = pairs.get(key) || { a: l.from, b: l.to, rate: 0, total: 0 };
      p.rate += l.bytes_per_second;
      p.total += l.bytes_total;
      pairs.set(key, p);
    }
    for (const p of pairs.values()) {
      const a = pos[p.a];
      const b = pos[p.b];
      if (!a || !b) {
        continue;
      }
      map.append(svg('line', { x1: a.x, y1: a.y, x2: b.x, y2: b.y,
        class: p.rate > 0 ? 'link busy' : 'link', 'data-link': `${p.a}-${p.b}` }));
      map.append(svg('text', { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 - 6, class: 'link-label' },
        `${rate(p.rate)} (${bytes(p.total)} copied)`));
    }
    for (const s of state.stations) {
      const p = pos[s.name];
      const up = s.engines.filter((e) => e.status === 'up').length;
      const g = svg('g', { class: 'station', 'data-station': s.name });
      g.append(svg('circle', { cx: p.x, cy: p.y, r: s.home ? 14 : 10, class: directorClass(s) }));
      g.append(svg('text', { x: p.x, y: p.y + 28 },
        `${s.name}${s.home ? ' (home)' : ''}: ${up}/${s.engines.length} engines up`));
      map.append(g);
    }
  }

  function drawStations(state) {
    const box = $('stations');
    box.replaceChildren();
    for (const s of state.stations) {
      const d = s.director;
      const director = d.reachable === null ? 'not polled yet'
        : d.reachable ? 'director reachable' : `director unreachable: ${d.error}`;
      const facts = [director, `reporting to the registry: ${s.reporting ? 'yes' : 'no'}`,
        `load ${(s.load * 100).toFixed(0)} %`];
      if (s.under_replicated !== null) {
        facts.push(`under-replicated ${s.under_replicated}`);
      }
      if (s.restarts !== null) {
        facts.push(`restarts ${s.restarts}`);
      }
      const rows = s.engines.map((e) => el('tr', { 'data-engine': e.name, 'data-status': e.status },
        el('td', {}, e.name),
        el('td', { class: `status ${engineClass(e)}` }, e.status),
        el('td', { class: 'num streams' }, e.streams),
        el('td', { class: 'num bandwidth' }, rate(e.bytes_per_second)),
        el('td', { class: 'num free' }, e.total_bytes ? `${bytes(e.free_bytes)} of ${bytes(e.total_bytes)}` : '-'),
        el('td', { class: 'num segments' }, `${e.segments}${e.filling ? ` +${e.filling}` : ''}`)));
      const table = el('table', {},
        el('thead', {}, el('tr', {}, el('th', {}, 'engine'), el('th', {}, 'status'),
          el('th', {}, 'streams'), el('th', {}, 'bandwidth'), el('th', {}, 'free space'),
          el('th', {}, 'segments'))),
        el('tbody', {}, ...rows));
      box.append(el('div', { class: 'card', 'data-station': s.name },
        el('h3', {}, el('span', { class: directorClass(s) }, '\u25cf '), s.name,
          s.home ? ' (home)' : ''),
        el('p', { class: 'facts' }, facts.join(' \u00b7 ')),
        table));
    }
  }

  function drawPrograms(state) {
    const names = state.stations.map((s) => s.name);
    const head = $('programs').tHead;
    head.replaceChildren(el('tr', {}, el('th', {}, 'program'), el('th', {}, 'segments'),
      ...names.map((n) => el('th', {}, n))));
    const body = $('programs').tBodies[0];
    body.replaceChildren();
    for (const p of state.programs) {
      if (p.error) {
        body.append(el('tr', { 'data-program': p.id }, el('td', {}, p.id),
          el('td', { colspan: names.length + 1 }, p.error)));
        continue;
      }
      const cells = p.stations.map((s) => {
        const share = p.segments ? s.held / p.segments : 0;
        const bar = el('span', { class: share >= 1 ? 'bar done' : 'bar' });
        bar.append(el('i', { style: `width: ${(share * 100).toFixed(0)}%` }));
        return el('td', { 'data-station': s.name, 'data-held': s.held },
          bar, `${s.held}/${p.segments}${s.target ? '' : ' (not a target)'}`);
      });
      const name = p.renditions ? `${p.id} (${p.renditions} renditions)` : p.id;
      body.append(el('tr', { 'data-program': p.id }, el('td', {}, name),
        el('td', { class: 'num' }, p.segments), ...cells));
    }
    const more = state.programs_total - state.programs.length;
    $('programs-count').textContent = more > 0
      ? `(${state.programs.length} of ${state.programs_total} shown)` : '';
  }

  function drawHot(state) {
    const body = $('hot').tBodies[0];
    body.replaceChildren(...state.hot_segments.map((h) => el('tr', {},
      el('td', {}, h.segment), el('td', {}, h.station),
      el('td', { class: 'num' }, h.requests.toFixed(1)))));
    if (state.hot_segments.length === 0) {
      body.append(el('tr', {}, el('td', { colspan: 3 }, 'no requests lately')));
    }
  }

  function drawEvents(state) {
    const list = $('events');
    list.replaceChildren(...state.events.map((e) => el('li', { class: e.kind },
      el('time', {}, new Date(e.at_ms).toLocaleTimeString()),
      `${e.kind.replace('_', ' ')}: ${e.subject}${e.subject === e.station ? '' : ` (${e.station})`}`
        + `${e.detail ? `: ${e.detail}` : ''}`)));
    if (state.events.length === 0) {
      list.append(el('li', {}, 'nothing yet'));
    }
  }

  $('login').addEventListener('submit', login);
  $('logout').addEventListener('click', logout);
  poll();
})();
