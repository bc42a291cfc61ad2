/* Eddy web console: the script of index.html. It polls GET /console/api/state every 2 s
   (sources, topics, persistent queries, processing log), runs the editor's statements
   against POST /ksql or, for a single SELECT or PRINT, the streaming POST /query-stream,
   and draws per-query charts and EXPLAIN plans as hand-written SVG. Plain ES2020, no
   libraries. Server-provided strings only ever reach the page through textContent or
   setAttribute, never through innerHTML. */
'use strict';

(() => {
  const POLL_MS = 2000;
  const HISTORY = 150; // points per query chart: 5 minutes of 2 s polls
  const WINDOW_MS = 5 * 60 * 1000;
  const MAX_ROWS = 1000;
  const MAX_LOG = 50;
  const TOKEN_KEY = 'eddy.console.token';
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const MONO = 'ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace';
  const DELIMITED = 'application/vnd.ksqlapi.delimited.v1';

  const $ = (id) => document.getElementById(id);

  /* ---------- DOM helpers ---------- */

  function append(node, children) {
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      node.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  /** An HTML element: props `class`, `text`, `title`, `onX` (listeners), others attributes. */
  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = String(v);
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    return append(e, children);
  }

  /** An SVG element with attributes. */
  function svg(tag, attrs, ...children) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== null && v !== undefined) e.setAttribute(k, String(v));
    }
    return append(e, children);
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  function empty(text) {
    return el('p', { class: 'empty', text });
  }

  /* ---------- formatting ---------- */

  function num(v) {
    return typeof v === 'number' && Number.isFinite(v) ? v : 0;
  }

  function fmtInt(v) {
    return Math.round(num(v)).toLocaleString('en-US');
  }

  function fmtRate(v) {
    const n = num(v);
    return n >= 100 ? fmtInt(n) : n.toFixed(1);
  }

  function fmtCompact(v) {
    const n = num(v);
    const abs = Math.abs(n);
    if (abs >= 1e9) return (n / 1e9).toFixed(1).replace(/\.0$/, '') + 'G';
    if (abs >= 1e6) return (n / 1e6).toFixed(1).replace(/\.0$/, '') + 'M';
    if (abs >= 1e3) return (n / 1e3).toFixed(1).replace(/\.0$/, '') + 'k';
    return Number.isInteger(n) ? String(n) : n.toFixed(1);
  }

  function fmtTime(ms) {
    const d = new Date(num(ms));
    const p = (x, w = 2) => String(x).padStart(w, '0');
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ` +
      `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
  }

  /** A cell value as text: JSON for objects and arrays. */
  function cellText(v) {
    if (v === null || v === undefined) return 'null';
    if (typeof v === 'object') return JSON.stringify(v);
    return String(v);
  }

  function cell(v) {
    const text = cellText(v);
    const cls = v === null || v === undefined ? 'null' : typeof v === 'number' ? 'num' : null;
    return el('td', { class: cls, title: text.length > 40 ? text : null, text });
  }

  function plural(n, word) {
    return `${fmtInt(n)} ${word}${n === 1 ? '' : 's'}`;
  }

  /* ---------- auth and fetch ---------- */

  class AuthError extends Error {}

  let token = readToken();
  let retryAfterToken = null; // what to run again once a token is saved

  function storage() {
    try { return window.sessionStorage; } catch (_) { return null; }
  }

  /** The token from `#token=...` (then removed from the address) or from sessionStorage. */
  function readToken() {
    const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
    if (m) {
      const t = decodeURIComponent(m[1]);
      if (storage()) storage().setItem(TOKEN_KEY, t);
      history.replaceState(null, '', location.pathname + location.search);
      return t;
    }
    return (storage() && storage().getItem(TOKEN_KEY)) || '';
  }

  function showTokenForm() {
    const form = $('token-form');
    if (!form.hidden) return;
    form.hidden = false;
    $('token').value = token;
    $('token').focus();
  }

  function saveToken(event) {
    event.preventDefault();
    token = $('token').value.trim();
    if (storage()) storage().setItem(TOKEN_KEY, token);
    $('token-form').hidden = true;
    pollState();
    const retry = retryAfterToken;
    retryAfterToken = null;
    if (retry) retry();
  }

  /** fetch() with the token, JSON bodies, and a 401 turned into the token form. */
  async function api(path, { method = 'GET', body, headers = {}, signal } = {}) {
    const h = Object.assign({}, headers);
    if (token) h.Authorization = `Bearer ${token}`;
    if (body !== undefined) h['Content-Type'] = 'application/json';
    const resp = await fetch(path, {
      method,
      headers: h,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: 'no-store',
    });
    if (resp.status === 401) {
      showTokenForm();
      throw new AuthError(await errorMessage(resp));
    }
    return resp;
  }

  async function readJson(resp) {
    const text = await resp.text();
    try { return JSON.parse(text); } catch (_) { return { message: text }; }
  }

  /** The message of an error response: its JSON "message", else its text. */
  async function errorMessage(resp) {
    const body = await readJson(resp).catch(() => ({}));
    return messageOf(body) || `HTTP ${resp.status}`;
  }

  function messageOf(body) {
    if (!body || typeof body !== 'object') return body ? String(body) : '';
    return body.message || body.errorMessage || body.error || '';
  }

  /* ---------- status line and connection ---------- */

  function setStatus(text, kind) {
    const s = $('status');
    s.textContent = text;
    s.className = 'status' + (kind ? ` ${kind}` : '');
  }

  function setConnected(ok, why) {
    const c = $('conn');
    c.textContent = ok ? 'connected' : 'disconnected';
    c.className = `conn ${ok ? 'connected' : 'disconnected'}`;
    c.title = why || '';
  }

  /* ---------- state polling ---------- */

  let polling = false;
  let pollAgain = false;

  async function pollState() {
    if (polling) { pollAgain = true; return; }
    polling = true;
    try {
      const resp = await api('/console/api/state');
      if (!resp.ok) throw new Error(await errorMessage(resp));
      const state = await resp.json();
      setConnected(true);
      renderState(state);
    } catch (e) {
      setConnected(false, e.message);
    } finally {
      polling = false;
      if (pollAgain) { pollAgain = false; pollState(); }
    }
  }

  function renderState(state) {
    const version = state.server && state.server.version;
    $('version').textContent = version ? `v${version}` : '';
    renderSources(state.sources || []);
    renderTopics(state.topics || []);
    renderQueries(state.queries || []);
    renderLog(state.processingLog || []);
  }

  /** Calls `render` only when `data` differs from the last time under `key`. */
  const lastSeen = new Map();
  function changed(key, data) {
    const sig = JSON.stringify(data);
    if (lastSeen.get(key) === sig) return false;
    lastSeen.set(key, sig);
    return true;
  }

  /* ---------- sources ---------- */

  const expanded = new Set();
  let lastSources = [];

  function renderSources(sources) {
    lastSources = sources;
    if (!changed('sources', [sources, [...expanded]])) return;
    const box = clear($('sources'));
    if (!sources.length) { box.append(empty('no streams or tables')); return; }
    for (const s of sources) box.append(sourceItem(s));
  }

  function sourceItem(s) {
    const open = expanded.has(s.name);
    const toggle = () => {
      if (open) expanded.delete(s.name); else expanded.add(s.name);
      renderSources(lastSources);
    };
    const item = el('div', { class: 'item source' },
      el('div', { class: 'item-head', onclick: toggle, title: 'show columns' },
        el('span', { class: 'caret', text: open ? '▾' : '▸' }),
        el('span', { class: `kind ${s.kind === 'TABLE' ? 'TABLE' : 'STREAM'}`, text: s.kind || '' }),
        el('span', { class: 'name', text: s.name }),
        el('span', { class: 'count', text: `${fmtInt(s.messages)} msgs` })),
      el('div', { class: 'item-meta',
        text: `topic ${s.topic || '?'} · ${s.keyFormat || '?'} / ${s.valueFormat || '?'}` }));
    if (open) {
      item.append(columnsTable(s.columns || []),
        el('button', { class: 'small', type: 'button', text: 'select',
          title: 'put a push query on this source in the editor',
          onclick: () => { $('sql').value = `SELECT * FROM ${s.name} EMIT CHANGES LIMIT 10;`; $('sql').focus(); } }));
    }
    return item;
  }

  function columnsTable(columns) {
    return el('table', { class: 'columns' },
      el('tbody', null, columns.map((c) =>
        el('tr', { class: c.key ? 'key' : null },
          el('td', { class: 'col', text: c.name }),
          el('td', { class: 'type', text: c.type })))));
  }

  /* ---------- topics ---------- */

  function renderTopics(topics) {
    if (!changed('topics', topics)) return;
    const box = clear($('topics'));
    if (!topics.length) { box.append(empty('no topics')); return; }
    for (const t of topics) box.append(topicItem(t));
  }

  function topicItem(t) {
    return el('div', { class: 'item topic' },
      el('div', { class: 'item-head' },
        el('span', { class: 'name', text: t.name }),
        el('span', { class: 'count', text: `${plural(num(t.partitions), 'partition')} · ${fmtInt(t.messages)} msgs` }),
        el('button', { class: 'small print', type: 'button', text: 'print',
          title: 'PRINT this topic from the beginning', onclick: () => printTopic(t.name) })));
  }

  function printTopic(name) {
    $('sql').value = `PRINT '${String(name).replace(/'/g, "''")}' FROM BEGINNING LIMIT 20;`;
    runEditor();
  }

  /* ---------- persistent queries: cards and charts ---------- */

  /** A fixed-size ring buffer of chart points. */
  class Ring {
    constructor(cap) { this.cap = cap; this.items = []; this.start = 0; }
    push(v) {
      if (this.items.length < this.cap) { this.items.push(v); return; }
      this.items[this.start] = v;
      this.start = (this.start + 1) % this.cap;
    }
    toArray() { return this.items.slice(this.start).concat(this.items.slice(0, this.start)); }
  }

  const cards = new Map(); // query id -> {root, refs, ring}
  const queriesById = new Map();
  let selectedQuery = null;

  function totalLag(q) {
    return (q.lag || []).reduce((sum, l) => sum + num(l.lag), 0);
  }

  function renderQueries(queries) {
    const box = $('charts');
    const now = Date.now();
    const seen = new Set();
    queriesById.clear();
    for (const q of queries) {
      seen.add(q.id);
      queriesById.set(q.id, q);
      let card = cards.get(q.id);
      if (!card) { card = makeCard(q); cards.set(q.id, card); }
      card.ring.push({ t: now, in: num(q.recordsInPerSecond), out: num(q.recordsOutPerSecond), lag: totalLag(q) });
      updateCard(card, q, now);
      box.append(card.root); // keeps server order; a no-op move when already in place
    }
    for (const [id, card] of cards) {
      if (!seen.has(id)) { card.root.remove(); cards.delete(id); }
    }
    const placeholder = box.querySelector(':scope > p.empty');
    if (queries.length && placeholder) placeholder.remove();
    if (!queries.length && !placeholder) box.append(empty('no persistent queries'));
    refreshExplain();
  }

  function makeCard(q) {
    const refs = {};
    const fact = (label, key) => [el('dt', { text: label }), refs[key] = el('dd')];
    const root = el('div', { class: 'card', 'data-query': q.id },
      el('div', { class: 'card-head' },
        el('span', { class: 'qid', text: q.id }),
        refs.badge = el('span', { class: 'badge' }),
        el('button', { class: 'small explain', type: 'button', text: 'explain',
          onclick: () => selectQuery(q.id) })),
      el('dl', { class: 'facts' },
        fact('sink', 'sink'), fact('sources', 'sources'),
        fact('tasks', 'tasks'), fact('total lag', 'lag'),
        fact('records in', 'in'), fact('records out', 'out')),
      refs.lagBox = el('div'),
      refs.chartBox = el('div', { class: 'chart-box' }));
    return { root, refs, ring: new Ring(HISTORY) };
  }

  function updateCard(card, q, now) {
    const r = card.refs;
    r.badge.textContent = q.status || '?';
    r.badge.className = `badge ${String(q.status || '').toUpperCase()}`;
    r.sink.textContent = q.sink || '–';
    r.sources.textContent = (q.sources || []).join(', ') || '–';
    const tasks = q.tasks || [];
    const threads = new Set(tasks.map((t) => t.thread));
    r.tasks.textContent = `${fmtInt(tasks.length)} on ${fmtInt(threads.size)} thread${threads.size === 1 ? '' : 's'}`;
    r.tasks.title = tasks.map((t) => `${t.id} on ${t.thread}: ${t.recordsIn} in, ${t.recordsOut} out, lag ${t.lag}`).join('\n');
    r.lag.textContent = fmtInt(totalLag(q));
    r.in.textContent = `${fmtInt(q.recordsIn)} (${fmtRate(q.recordsInPerSecond)}/s)`;
    r.out.textContent = `${fmtInt(q.recordsOut)} (${fmtRate(q.recordsOutPerSecond)}/s)`;
    card.root.classList.toggle('selected', q.id === selectedQuery);
    if (changed(`lag:${q.id}`, q.lag || [])) {
      clear(r.lagBox).append(lagTable(q.lag || []));
    }
    clear(r.chartBox).append(drawChart(card.ring.toArray(), now));
  }

  function lagTable(lag) {
    if (!lag.length) return null;
    return el('table', { class: 'grid lag-table' },
      el('thead', null, el('tr', null,
        el('th', { text: 'topic' }), el('th', { text: 'partition' }), el('th', { text: 'lag' }))),
      el('tbody', null, lag.map((l) => el('tr', null,
        el('td', { text: l.topic }), cell(l.partition), cell(num(l.lag))))));
  }

  /** The smallest of 1, 2, 2.5, 5 times a power of ten that is at least `v` (1 for 0). */
  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  const SERIES = [
    { key: 'in', label: 'in/s', axis: 'rate' },
    { key: 'out', label: 'out/s', axis: 'rate' },
    { key: 'lag', label: 'lag', axis: 'lag' },
  ];

  /** A line chart of the last 5 minutes: rates on the left axis, lag on the right. */
  function drawChart(points, now) {
    const W = 420, H = 130, L = 40, R = 40, T = 22, B = 16;
    const pw = W - L - R, ph = H - T - B;
    const t0 = now - WINDOW_MS;
    const shown = points.filter((p) => p.t >= t0);
    const max = {
      rate: niceMax(Math.max(0, ...shown.map((p) => Math.max(p.in, p.out)))),
      lag: niceMax(Math.max(0, ...shown.map((p) => p.lag))),
    };
    const x = (t) => (L + ((t - t0) / WINDOW_MS) * pw).toFixed(1);
    const y = (v, axis) => (T + ph - (v / max[axis]) * ph).toFixed(1);
    const text = (tx, ty, anchor, s) => svg('text', { x: tx, y: ty, 'text-anchor': anchor }, s);

    const root = svg('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img',
      'aria-label': 'records in and out per second and total lag over the last 5 minutes' });
    for (const f of [0.5, 1]) {
      const gy = T + ph * (1 - f);
      root.append(svg('line', { class: 'gridline', x1: L, x2: L + pw, y1: gy, y2: gy }));
    }
    root.append(
      svg('line', { class: 'axis', x1: L, x2: L + pw, y1: T + ph, y2: T + ph }),
      svg('line', { class: 'axis', x1: L, x2: L, y1: T, y2: T + ph }),
      svg('line', { class: 'axis', x1: L + pw, x2: L + pw, y1: T, y2: T + ph }),
      text(L - 4, T + 7, 'end', `${fmtCompact(max.rate)}/s`),
      text(L - 4, T + ph, 'end', '0/s'),
      text(L + pw + 4, T + 7, 'start', fmtCompact(max.lag)),
      text(L + pw + 4, T + ph, 'start', '0'),
      text(L, H - 3, 'start', '−5m'),
      text(L + pw / 2, H - 3, 'middle', '−2.5m'),
      text(L + pw, H - 3, 'end', 'now'));

    for (const s of SERIES) {
      const pts = shown.map((p) => `${x(p.t)},${y(p[s.key], s.axis)}`);
      if (pts.length === 1) {
        const [cx, cy] = pts[0].split(',');
        root.append(svg('circle', { class: s.key, cx, cy, r: 2 }));
      } else if (pts.length > 1) {
        root.append(svg('polyline', { class: `series ${s.key}`, points: pts.join(' ') }));
      }
    }
    root.append(chartLegend(shown[shown.length - 1], L));
    return root;
  }

  function chartLegend(last, left) {
    const g = svg('g', { class: 'legend' });
    SERIES.forEach((s, i) => {
      const lx = left + i * 112;
      const value = last ? (s.key === 'lag' ? fmtCompact(last.lag) : fmtRate(last[s.key])) : '–';
      g.append(
        svg('line', { class: `series ${s.key}`, x1: lx, x2: lx + 14, y1: 9, y2: 9 }),
        svg('text', { x: lx + 18, y: 12, 'text-anchor': 'start' }, `${s.label} ${value}`));
    });
    return g;
  }

  /* ---------- EXPLAIN ---------- */

  function selectQuery(id) {
    selectedQuery = id;
    lastSeen.delete('explain');
    for (const [qid, card] of cards) card.root.classList.toggle('selected', qid === id);
    refreshExplain();
    $('explain').scrollIntoView({ block: 'nearest', behavior: 'smooth' });
  }

  function refreshExplain() {
    if (selectedQuery === null) return;
    const q = queriesById.get(selectedQuery) || null;
    if (!changed('explain', [selectedQuery, q && q.sql, q && q.plan])) return;
    const box = clear($('explain'));
    if (!q) { box.append(empty(`query ${selectedQuery} is no longer running`)); return; }
    box.append(
      el('div', { class: 'explain-title', text: `${q.id} → ${q.sink || '?'}` }),
      el('pre', { class: 'sql', text: q.sql || '' }),
      drawPlan(planLines(q)));
  }

  /** The plan's lines, or source and sink boxes when the server sent no plan. */
  function planLines(q) {
    const lines = (q.plan || []).map((l) => String(l).trim()).filter(Boolean);
    if (lines.length) return lines;
    return [...(q.sources || []).map((s) => `Source: ${s}`), `Sink: ${q.sink || '?'}`];
  }

  let measureCtx;
  function textWidth(s) {
    if (measureCtx === undefined) {
      measureCtx = document.createElement('canvas').getContext('2d');
      if (measureCtx) measureCtx.font = `12px ${MONO}`;
    }
    return measureCtx ? measureCtx.measureText(s).width : s.length * 7.3;
  }

  /** The plan as boxes top to bottom with arrows between; source and sink tinted. */
  function drawPlan(lines) {
    const MAX_CHARS = 90, BOX_H = 28, GAP = 22, PAD = 12, MARGIN = 10;
    const items = lines.map((full) => {
      const short = full.length > MAX_CHARS ? `${full.slice(0, MAX_CHARS - 1)}…` : full;
      return { full, short, w: Math.ceil(textWidth(short)) + 2 * PAD };
    });
    const W = Math.max(160, ...items.map((i) => i.w)) + 2 * MARGIN;
    const H = 2 * MARGIN + items.length * BOX_H + (items.length - 1) * GAP;
    const cx = W / 2;
    const root = svg('svg', { class: 'plan', width: W, height: H, viewBox: `0 0 ${W} ${H}`,
      role: 'img', 'aria-label': 'query plan' },
      svg('defs', null,
        svg('marker', { id: 'plan-arrow', viewBox: '0 0 10 10', refX: 9, refY: 5,
          markerWidth: 7, markerHeight: 7, orient: 'auto' },
          svg('path', { d: 'M0,0 L10,5 L0,10 z' }))));
    items.forEach((it, i) => {
      const top = MARGIN + i * (BOX_H + GAP);
      const kind = i === 0 ? 'source' : i === items.length - 1 ? 'sink' : 'step';
      root.append(svg('g', null,
        svg('title', null, it.full),
        svg('rect', { class: kind, x: (cx - it.w / 2).toFixed(1), y: top, width: it.w, height: BOX_H, rx: 6, ry: 6 }),
        svg('text', { x: cx, y: top + BOX_H / 2 + 4, 'text-anchor': 'middle' }, it.short)));
      if (i < items.length - 1) {
        root.append(svg('line', { x1: cx, x2: cx, y1: top + BOX_H, y2: top + BOX_H + GAP - 2,
          'marker-end': 'url(#plan-arrow)' }));
      }
    });
    return root;
  }

  /* ---------- processing log ---------- */

  function renderLog(entries) {
    const latest = entries.slice(-MAX_LOG).reverse();
    if (!changed('plog', latest)) return;
    const box = clear($('plog'));
    if (!latest.length) { box.append(empty('no errors')); return; }
    box.append(el('table', { class: 'grid' },
      el('thead', null, el('tr', null,
        ['time', 'query', 'topic / partition / offset', 'message'].map((h) => el('th', { text: h })))),
      el('tbody', null, latest.map((e) => el('tr', null,
        el('td', { text: fmtTime(e.timestamp) }),
        el('td', { text: e.query || '' }),
        el('td', { text: `${e.topic || '?'} / ${cellText(e.partition)} / ${cellText(e.offset)}` }),
        el('td', { class: 'msg', text: e.message || '' }))))));
  }

  /* ---------- the editor: splitting and routing statements ---------- */

  /** The statements of `text`, comments removed, split on `;` outside quotes. */
  function splitStatements(text) {
    const out = [];
    let cur = '';
    let i = 0;
    const n = text.length;
    while (i < n) {
      const c = text[i], d = text[i + 1];
      if (c === '-' && d === '-') {
        const j = text.indexOf('\n', i);
        i = j < 0 ? n : j;
      } else if (c === '/' && d === '*') {
        const j = text.indexOf('*/', i + 2);
        i = j < 0 ? n : j + 2;
        cur += ' ';
      } else if (c === "'" || c === '"' || c === '`') {
        let j = i + 1;
        while (j < n && !(text[j] === c && text[j + 1] !== c)) j += text[j] === c ? 2 : 1;
        cur += text.slice(i, j + 1);
        i = j + 1;
      } else if (c === ';') {
        if (cur.trim()) out.push(cur.trim());
        cur = '';
        i += 1;
      } else {
        cur += c;
        i += 1;
      }
    }
    if (cur.trim()) out.push(cur.trim());
    return out;
  }

  /** A short name for what runs, for the status line: CSAS, CTAS, SHOW STREAMS, ... */
  function describe(statements) {
    if (statements.length !== 1) return plural(statements.length, 'statement');
    const s = statements[0].toUpperCase().replace(/\s+/g, ' ');
    const m = /^CREATE (OR REPLACE )?(STREAM|TABLE) .*? AS SELECT /.exec(s);
    if (m) return m[2] === 'STREAM' ? 'CSAS' : 'CTAS';
    if (/^INSERT INTO .* SELECT /.test(s)) return 'INSERT INTO … SELECT';
    return s.split(' ').slice(0, 2).join(' ');
  }

  function properties() {
    return $('earliest').checked ? { 'auto.offset.reset': 'earliest' } : {};
  }

  async function runEditor() {
    const text = $('sql').value;
    const statements = splitStatements(text);
    if (!statements.length) { setStatus('nothing to run'); return; }
    try {
      await stopCurrent();
      if (statements.length === 1 && /^(SELECT|PRINT)\b/i.test(statements[0])) {
        await runQuery(`${statements[0]};`, describe(statements));
      } else {
        await runKsql(text, describe(statements));
      }
    } catch (e) {
      if (e instanceof AuthError) retryAfterToken = runEditor;
      setStatus(`failed: ${e.message}`, 'error');
    }
  }

  /* ---------- /ksql ---------- */

  async function runKsql(text, label) {
    setStatus(`running ${label}…`, 'busy');
    let resp;
    try {
      resp = await api('/ksql', { method: 'POST', body: { ksql: text, streamsProperties: properties() } });
    } finally {
      pollState(); // refresh sources and queries at once
    }
    const body = await readJson(resp);
    const box = clear($('results'));
    if (!resp.ok) {
      for (const e of (body && body.entities) || []) box.append(entityBlock(e));
      const message = messageOf(body) || `HTTP ${resp.status}`;
      box.append(el('div', { class: 'message error', text: message }));
      setStatus(`${label} failed: ${message}`, 'error');
      return;
    }
    const entities = Array.isArray(body) ? body : [body];
    if (!entities.length) box.append(el('div', { class: 'message', text: 'done' }));
    for (const e of entities) box.append(entityBlock(e));
    const last = entities[entities.length - 1];
    const status = last && last.commandStatus && last.commandStatus.message;
    setStatus(status ? `${label}: ${status}` : `${label}: ok`);
  }

  const LIST_KEYS = ['streams', 'tables', 'topics', 'queries', 'properties', 'variables',
    'rows', 'functions', 'types', 'connectors'];

  function entityBlock(e) {
    const title = [e && e['@type'], e && e.statementText].filter(Boolean).join(' · ');
    return el('div', { class: 'entity' },
      title ? el('div', { class: 'entity-title', text: title }) : null,
      entityBody(e));
  }

  /** A known list as a table, a "text" as <pre>, a command status as a message, else JSON. */
  function entityBody(e) {
    if (!e || typeof e !== 'object') return el('pre', { text: cellText(e) });
    const key = LIST_KEYS.find((k) => Array.isArray(e[k])) ||
      Object.keys(e).find((k) => k !== 'warnings' && Array.isArray(e[k]) && e[k].length &&
        e[k].every((x) => x && typeof x === 'object' && !Array.isArray(x)));
    if (key) return objectsTable(e[key]);
    if (typeof e.text === 'string') return el('pre', { text: e.text });
    if (e.commandStatus) {
      return el('div', { class: 'message', text: e.commandStatus.message || e.commandStatus.status || 'done' });
    }
    if (e.sourceDescription && typeof e.sourceDescription === 'object') {
      return sourceDescription(e.sourceDescription);
    }
    return el('pre', { text: JSON.stringify(e, null, 2) });
  }

  /** A table of objects, one column per key (in first-seen order). */
  function objectsTable(list) {
    if (!list.length) return empty('(none)');
    if (!list.every((x) => x && typeof x === 'object' && !Array.isArray(x))) {
      return el('pre', { text: list.map(cellText).join('\n') });
    }
    const cols = [];
    for (const o of list) for (const k of Object.keys(o)) if (!cols.includes(k)) cols.push(k);
    return el('table', { class: 'grid' },
      el('thead', null, el('tr', null, cols.map((c) => el('th', { text: c })))),
      el('tbody', null, list.map((o) => el('tr', { class: 'row' }, cols.map((c) => cell(o[c]))))));
  }

  function sourceDescription(d) {
    const facts = ['name', 'type', 'topic', 'keyFormat', 'valueFormat', 'partitions', 'timestamp', 'windowType']
      .filter((k) => d[k] !== undefined && d[k] !== null && d[k] !== '')
      .map((k) => ({ property: k, value: d[k] }));
    const queries = (list) => (list || []).map((q) => q.id).join(', ');
    if (d.readQueries && d.readQueries.length) facts.push({ property: 'read by', value: queries(d.readQueries) });
    if (d.writeQueries && d.writeQueries.length) facts.push({ property: 'written by', value: queries(d.writeQueries) });
    const fields = (d.fields || []).map((f) => ({
      column: f.name,
      type: (f.schema && f.schema.type) || '',
      key: f.type === 'KEY' ? 'KEY' : '',
    }));
    return el('div', null, objectsTable(facts), el('div', { class: 'entity-title', text: 'columns' }),
      objectsTable(fields), d.statement ? el('pre', { class: 'text', text: d.statement }) : null);
  }

  /* ---------- /query-stream: pull, push and PRINT ---------- */

  let current = null; // the running query: {controller, queryId, kind, rows, stopped, ...}

  function setRunning(on) {
    $('stop').disabled = !on;
  }

  async function runQuery(sql, label) {
    const kind = /^PRINT\b/i.test(sql) ? 'print' : /\bEMIT\s+CHANGES\b/i.test(sql) ? 'push' : 'pull';
    const run = { controller: new AbortController(), queryId: null, kind, rows: 0, stopped: false,
      limit: /\bLIMIT\s+\d+\s*;?$/i.test(sql), final: null, error: null };
    current = run;
    setRunning(true);
    setStatus(`running ${label}…`, 'busy');
    clear($('results')).append(empty('waiting for rows…'));
    try {
      const resp = await api('/query-stream', {
        method: 'POST',
        body: { sql, properties: properties() },
        headers: { Accept: DELIMITED },
        signal: run.controller.signal,
      });
      if (!resp.ok) {
        run.error = await errorMessage(resp);
      } else if ((resp.headers.get('content-type') || '').startsWith('text/plain')) {
        await readLines(resp, run, (line) => printLine(run, line));
      } else {
        await readLines(resp, run, (line) => queryLine(run, line));
      }
    } catch (e) {
      if (e instanceof AuthError) retryAfterToken = runEditor;
      if (!run.stopped) run.error = e.message;
    }
    finish(run);
  }

  /** Reads a streaming response line by line until it ends or is aborted. */
  async function readLines(resp, run, onLine) {
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buf = '';
    const deliver = (line) => { if (current === run) onLine(line.replace(/\r$/, '')); };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        deliver(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
    }
    buf += decoder.decode();
    if (buf) deliver(buf);
  }

  /** One line of a delimited response: the header, a row, or a final or error message. */
  function queryLine(run, line) {
    if (!line.trim()) return;
    let v;
    try { v = JSON.parse(line); } catch (_) { run.error = line; return; }
    if (Array.isArray(v)) { addRow(run, v); return; }
    if (!v || typeof v !== 'object') return;
    if (!run.table && Array.isArray(v.columnNames)) { startTable(run, v); return; }
    if (v.finalMessage) { run.final = v.finalMessage; return; }
    if (v['@type'] || v.errorMessage || v.message) {
      run.error = (v.errorMessage && (v.errorMessage.message || cellText(v.errorMessage))) ||
        v.message || JSON.stringify(v);
    }
  }

  function startTable(run, header) {
    run.queryId = header.queryId || null;
    const types = header.columnTypes || [];
    run.tbody = el('tbody');
    run.table = el('table', { class: 'grid' },
      el('thead', null, el('tr', null, header.columnNames.map((name, i) =>
        el('th', { title: types[i] || null }, name, types[i] ? el('span', { class: 'type', text: types[i] }) : null)))),
      run.tbody);
    clear($('results')).append(run.table);
    setStatus(`${run.kind === 'push' ? 'streaming' : 'reading'}: 0 rows`, 'busy');
  }

  function addRow(run, cells) {
    if (!run.table) startTable(run, { columnNames: cells.map((_, i) => `col${i + 1}`) });
    const box = $('results');
    const atBottom = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
    run.tbody.append(el('tr', { class: 'row' }, cells.map(cell)));
    while (run.tbody.rows.length > MAX_ROWS) run.tbody.deleteRow(0);
    run.rows += 1;
    if (atBottom) box.scrollTop = box.scrollHeight;
    setStatus(`${run.kind === 'push' ? 'streaming' : 'reading'}: ${rowsText(run)}`, 'busy');
  }

  function printLine(run, line) {
    if (!run.pre) {
      run.pre = el('pre', { class: 'print' });
      clear($('results')).append(run.pre);
    }
    run.pre.append(document.createTextNode(`${line}\n`));
    while (run.pre.childNodes.length > MAX_ROWS) run.pre.removeChild(run.pre.firstChild);
    run.rows += 1;
    setStatus(`printing: ${plural(run.rows, 'line')}`, 'busy');
  }

  function rowsText(run) {
    const shown = run.rows > MAX_ROWS ? ` (showing the last ${fmtInt(MAX_ROWS)})` : '';
    return plural(run.rows, 'row') + shown;
  }

  /** The end of a query: the status line says how it ended. */
  function finish(run) {
    if (current !== run) return; // a newer query took over
    current = null;
    setRunning(false);
    const what = run.kind === 'print' ? plural(run.rows, 'line') : rowsText(run);
    if (run.error) {
      setStatus(`query failed: ${run.error}`, 'error');
      if (!run.table && !run.pre) clear($('results')).append(el('div', { class: 'message error', text: run.error }));
      return;
    }
    if (!run.table && !run.pre) clear($('results')).append(empty(run.kind === 'print' ? 'no lines' : 'no rows'));
    if (run.stopped) setStatus(`stopped: ${what}`);
    else if (run.kind === 'push') setStatus(`${what} (${run.final || (run.limit ? 'limit reached' : 'query ended')})`);
    else setStatus(what);
  }

  /** Stops the running query: /close-query for a push query, then aborts the fetch. */
  async function stopCurrent() {
    const run = current;
    if (!run) return;
    run.stopped = true;
    if (run.kind === 'push' && run.queryId) {
      try {
        await api('/close-query', { method: 'POST', body: { queryId: run.queryId } });
      } catch (_) { /* the abort below ends it anyway */ }
    }
    run.controller.abort();
    finish(run);
  }

  /* ---------- start ---------- */

  function start() {
    $('run').addEventListener('click', runEditor);
    $('stop').addEventListener('click', stopCurrent);
    $('token-form').addEventListener('submit', saveToken);
    $('sql').addEventListener('keydown', (e) => {
      if ((e.ctrlKey || e.metaKey) && e.key === 'Enter') {
        e.preventDefault();
        runEditor();
      }
    });
    pollState();
    setInterval(pollState, POLL_MS);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
