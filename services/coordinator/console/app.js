// Tailsift admin console. A client of the coordinator's /v1 admin API, nothing else: every value
// shown comes from it, every change goes through it with the signed-in token, so the API's
// guard decides what the token may do (this page only disables what it would refuse). The
// token lives in this tab's session storage. Everything the API returns is untrusted text: it
// is only ever set as textContent, never parsed as HTML.
'use strict';

const TOKEN_KEY = 'tailsift.console.token';
const REFRESH_MS = 2000;
const CHART_POINTS = 60;
const MAX_DIFF_LINES = 4000;

const state = {
  token: null, role: null, name: null, node: null,
  page: null, timer: null, busy: false, again: false,
  policy: null, history: [], series: [],
  validateTimer: null, validateSeq: 0,
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}

// ---- API -----------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || ('HTTP ' + status));
    this.status = status;
    this.body = body || {};
  }
}

async function api(method, path, body) {
  // The token this request carries: an answer to a request of an earlier session (signed out
  // since, or another token) must not sign the current session out.
  const token = state.token;
  if (!token) throw new ApiError(401, { error: 'signed out' });
  const opts = { method, headers: { 'authorization': 'Bearer ' + token }, cache: 'no-store' };
  if (body !== undefined) {
    opts.headers['content-type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, opts);
  } catch (e) {
    throw new ApiError(0, { error: 'coordinator unreachable: ' + e.message });
  }
  let data = null;
  try { data = await resp.json(); } catch (_) { data = null; }
  if (resp.status === 401) {
    if (state.token === token) signOut('The coordinator no longer accepts this token (wrong, expired or removed). Sign in again.');
    throw new ApiError(401, data);
  }
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

// ---- Formatting ----------------------------------------------------------------------------

function rate(v) {
  if (v === null || v === undefined) return '–';
  if (v >= 1e6) return (v / 1e6).toFixed(2) + 'M';
  if (v >= 1e4) return (v / 1e3).toFixed(1) + 'k';
  if (v >= 100) return Math.round(v).toLocaleString('en-US');
  return v.toFixed(1);
}
function pct(v) { return (v === null || v === undefined) ? '–' : (v * 100).toFixed(v >= 0.1 ? 1 : 2) + '%'; }
function count(v) { return (v === null || v === undefined) ? '–' : Number(v).toLocaleString('en-US'); }
function when(ms) { return ms ? new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC') : '–'; }
function age(ms) { return ms < 1000 ? 'now' : ms < 120000 ? Math.round(ms / 1000) + ' s ago' : Math.round(ms / 60000) + ' min ago'; }
function ranges(parts) {
  if (!parts || !parts.length) return 'none';
  const out = [];
  let start = parts[0], prev = parts[0];
  for (const p of parts.slice(1).concat([null])) {
    if (p !== null && p === prev + 1) { prev = p; continue; }
    out.push(start === prev ? String(start) : start + '–' + prev);
    start = prev = p;
  }
  return out.join(', ');
}
function setText(id, text) { const e = $(id); if (e.textContent !== text) e.textContent = text; }
function status(id, text, ok) {
  const e = $(id);
  e.textContent = text;
  e.className = ok === undefined ? '' : ok ? 'ok-text' : 'bad-text';
}
function fillBody(table, rows, cols, emptyText) {
  const tbody = table.tBodies[0];
  tbody.replaceChildren(...(rows.length ? rows : [el('tr', {}, el('td', { class: 'empty', colspan: cols, text: emptyText }))]));
}

// ---- Line diff (longest common subsequence, bounded) ---------------------------------------

function diffLines(a, b) {
  const x = a.split('\n'), y = b.split('\n');
  if (x.length > MAX_DIFF_LINES || y.length > MAX_DIFF_LINES) return null;
  let pre = 0;
  while (pre < x.length && pre < y.length && x[pre] === y[pre]) pre++;
  let suf = 0;
  while (suf < x.length - pre && suf < y.length - pre && x[x.length - 1 - suf] === y[y.length - 1 - suf]) suf++;
  const xs = x.slice(pre, x.length - suf), ys = y.slice(pre, y.length - suf);
  const n = xs.length, m = ys.length;
  const t = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--)
    for (let j = m - 1; j >= 0; j--)
      t[i][j] = xs[i] === ys[j] ? t[i + 1][j + 1] + 1 : Math.max(t[i + 1][j], t[i][j + 1]);
  const ops = x.slice(0, pre).map((l) => [' ', l]);
  let i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && xs[i] === ys[j]) { ops.push([' ', xs[i]]); i++; j++; }
    else if (i < n && (j === m || t[i + 1][j] >= t[i][j + 1])) { ops.push(['-', xs[i]]); i++; }
    else { ops.push(['+', ys[j]]); j++; }
  }
  return ops.concat(x.slice(x.length - suf).map((l) => [' ', l]));
}

function showDiff(pre, a, b, labelA, labelB) {
  const ops = diffLines(a, b);
  if (ops === null) { pre.replaceChildren('Documents too long to compare here (more than ' + MAX_DIFF_LINES + ' lines).'); return; }
  if (!ops.some((o) => o[0] !== ' ')) { pre.replaceChildren('No difference between ' + labelA + ' and ' + labelB + '.'); return; }
  const lines = [el('span', { class: 'ctx', text: '--- ' + labelA }), el('span', { class: 'ctx', text: '+++ ' + labelB })];
  // Unchanged lines more than 3 away from a change are folded.
  const near = ops.map(() => false);
  ops.forEach((o, k) => { if (o[0] !== ' ') for (let d = -3; d <= 3; d++) if (ops[k + d]) near[k + d] = true; });
  let folded = false;
  ops.forEach((o, k) => {
    if (!near[k]) { if (!folded) lines.push(el('span', { class: 'ctx', text: '@@' })); folded = true; return; }
    folded = false;
    const cls = o[0] === '+' ? 'add' : o[0] === '-' ? 'del' : 'ctx';
    lines.push(el('span', { class: cls, text: o[0] + ' ' + o[1] }));
  });
  pre.replaceChildren(...lines);
}

// ---- Sign-in -------------------------------------------------------------------------------

function signOut(reason) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null; state.role = null; state.page = null;
  clearInterval(state.timer); state.timer = null;
  $('top').hidden = true;
  $('banner').hidden = true;
  for (const p of document.querySelectorAll('.page')) p.hidden = true;
  $('signin').hidden = false;
  $('signin-reason').textContent = reason || '';
  $('token').value = '';
  $('token').focus();
}

async function signIn(token) {
  state.token = token;
  let me;
  try {
    me = await fetch('/v1/whoami', { headers: { authorization: 'Bearer ' + token }, cache: 'no-store' });
  } catch (e) {
    return signOut('The coordinator could not be reached: ' + e.message);
  }
  if (me.status === 401) return signOut('This token is not accepted by the coordinator.');
  if (!me.ok) return signOut('Sign-in failed: HTTP ' + me.status);
  const who = await me.json();
  sessionStorage.setItem(TOKEN_KEY, token);
  state.role = who.role; state.name = who.name; state.node = who.node;
  $('signin').hidden = true;
  $('top').hidden = false;
  $('who').textContent = who.name + ' · ' + (who.role === 'admin' ? 'admin' : 'read-only') + ' · node ' + who.node;
  const ro = who.role !== 'admin';
  $('banner').hidden = !ro;
  $('banner').textContent = ro ? 'Signed in with a read-only token: you can see everything; every change is disabled.' : '';
  for (const b of document.querySelectorAll('.write')) {
    b.disabled = ro;
    if (ro) b.title = 'needs an admin token';
  }
  for (const i of document.querySelectorAll('#cl-settings input')) i.disabled = ro;
  route();
}

// ---- Pages ---------------------------------------------------------------------------------

const pages = {
  overview: { load: loadOverview, every: true },
  policy: { load: loadPolicy, every: false },
  shadow: { load: loadShadow, every: true },
  captures: { load: loadCaptures, every: true },
  cluster: { load: loadCluster, every: true },
};

function route() {
  if (!state.token) return;
  const name = (location.hash.match(/^#\/(\w+)/) || [])[1];
  const page = pages[name] ? name : 'overview';
  if (state.page !== page) {
    state.page = page;
    for (const p of Object.keys(pages)) {
      $('page-' + p).hidden = p !== page;
      const a = $('nav-' + p);
      if (p === page) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    }
    document.title = 'Tailsift · ' + page[0].toUpperCase() + page.slice(1);
  }
  refresh(true);
  clearInterval(state.timer);
  state.timer = setInterval(() => refresh(false), REFRESH_MS);
}

async function refresh(first) {
  const p = pages[state.page];
  if (!p || (!first && !p.every) || !state.token) return;
  // A page opened while the last one is still loading loads right after it (pages that do not
  // refresh on the timer would otherwise stay empty).
  if (state.busy) { if (first) state.again = true; return; }
  state.busy = true;
  try { await p.load(first); }
  catch (e) { if (e.status !== 401) console.warn(e); }
  finally {
    state.busy = false;
    if (state.again) { state.again = false; refresh(true); }
  }
}

// ---- Overview ------------------------------------------------------------------------------

async function loadOverview() {
  const o = await api('GET', '/v1/overview');
  const t = o.total;
  setText('ov-spans-in', rate(t.spans_in_per_s));
  setText('ov-spans-kept', rate(t.spans_kept_per_s));
  setText('ov-traces', rate(t.traces_per_s));
  setText('ov-keep-rate', pct(o.keep_rate));
  setText('ov-span-keep-rate', pct(o.span_keep_rate));
  setText('ov-workers-count', String(o.workers.length));
  setText('ov-workers-behind', o.workers_behind ? o.workers_behind + ' behind version ' + o.policy_version : 'all on version ' + o.policy_version);
  setText('ov-updated', 'Updated ' + new Date(o.now_unix_ms).toLocaleTimeString() + ' from node ' + o.node + '.');
  state.series.push([t.spans_in_per_s, t.spans_kept_per_s]);
  if (state.series.length > CHART_POINTS) state.series.shift();
  drawChart();
  fillBody($('ov-rules'), o.rules.map((r) => el('tr', {},
    el('td', { class: 'id', text: r.policy, title: r.policy }),
    el('td', { class: 'num', text: rate(r.kept_per_s) }),
    el('td', { class: 'num', text: pct(r.share) }))), 3, 'No keeps reported yet.');
  fillBody($('ov-workers'), o.workers.map((w) => {
    const r = w.rates;
    const keep = r && r.traces_per_s > 0 ? r.traces_kept_per_s / r.traces_per_s : null;
    const version = el('td', { class: 'num' }, 'v' + w.version);
    if (w.behind) version.append(el('span', { class: 'flag behind', text: 'BEHIND', title: 'applies version ' + w.version + ' of ' + o.policy_version }));
    const settings = el('td', { class: 'num' }, 'r' + w.settings_revision);
    if (w.settings_behind) settings.append(el('span', { class: 'flag behind', text: 'BEHIND' }));
    const last = el('td', { class: 'num' }, age(w.report_age_ms));
    if (w.stale) last.append(el('span', { class: 'flag stale', text: 'STALE', title: 'no report for ' + Math.round(o.fresh_ms / 1000) + ' s: left out of the totals' }));
    return el('tr', { class: w.behind ? 'behind' : null, 'data-worker': w.worker_id, 'data-version': w.version },
      el('td', { class: 'id', text: w.worker_id, title: w.worker_id }),
      version, settings,
      el('td', { text: ranges(w.partitions) }),
      el('td', { class: 'num', text: r ? rate(r.spans_in_per_s) : '–' }),
      el('td', { class: 'num', text: pct(keep) }),
      last);
  }), 7, 'No worker has reported to this coordinator.');
}

function drawChart() {
  const c = $('ov-chart');
  const w = c.clientWidth || 960, h = 140, dpr = window.devicePixelRatio || 1;
  if (c.width !== Math.round(w * dpr)) { c.width = Math.round(w * dpr); c.height = Math.round(h * dpr); }
  const g = c.getContext('2d');
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const max = Math.max(1, ...state.series.map((s) => s[0]));
  g.fillStyle = '#5a6370'; g.font = '11px system-ui, sans-serif';
  g.fillText(rate(max) + '/s', 4, 12);
  g.strokeStyle = '#d5d9df'; g.beginPath(); g.moveTo(0, h - 0.5); g.lineTo(w, h - 0.5); g.stroke();
  const line = (k, color) => {
    g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
    state.series.forEach((s, i) => {
      const x = w - (state.series.length - 1 - i) * (w / (CHART_POINTS - 1));
      const y = h - 4 - (s[k] / max) * (h - 20);
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.stroke();
  };
  line(0, '#7a8899'); line(1, '#1f4e79');
}

// ---- Policy --------------------------------------------------------------------------------

async function loadPolicy() {
  const [cur, hist] = await Promise.all([api('GET', '/v1/policy'), api('GET', '/v1/policy/history')]);
  state.policy = cur.policy;
  state.history = hist.versions;
  setText('pol-version', cur.version ? 'v' + cur.version : 'none');
  const p = cur.policy;
  setText('pol-meta', p ? (p.rollback_of ? 'Rollback of v' + p.rollback_of + ' · ' : '') + 'by ' + p.author + ' at ' + when(p.time_unix_ms) + ' · ' + p.format + (p.note ? ' · “' + p.note + '”' : '') : 'No policy published yet.');
  $('pol-current').textContent = p ? p.document : '';
  if (!$('pol-editor').value && p) { $('pol-editor').value = p.document; }
  renderHistory();
  editorChanged();
}

function renderHistory() {
  const vs = state.history;
  const ro = state.role !== 'admin';
  // The operator's pick stays across refreshes until a new version arrives: then the newest two.
  const fresh = state.historyTop !== (vs[0] && vs[0].version);
  state.historyTop = vs[0] && vs[0].version;
  const checked = (name, i) => { const c = !fresh && document.querySelector('input[name=' + name + ']:checked'); return c ? Number(c.value) : (vs[i] ? vs[i].version : null); };
  const a = checked('diff-a', 1), b = checked('diff-b', 0);
  fillBody($('pol-history'), vs.map((v, i) => el('tr', { 'data-version': v.version },
    el('td', { class: 'num', text: 'v' + v.version + (i === 0 ? ' (current)' : '') }),
    el('td', { text: when(v.time_unix_ms) }),
    el('td', { text: v.author }),
    el('td', { text: v.note || (v.rollback_of ? 'rollback to v' + v.rollback_of : '') }),
    el('td', { text: v.format }),
    el('td', {}, el('input', { type: 'radio', name: 'diff-a', value: v.version, checked: v.version === a, 'aria-label': 'compare from v' + v.version, onchange: historyDiff })),
    el('td', {}, el('input', { type: 'radio', name: 'diff-b', value: v.version, checked: v.version === b, 'aria-label': 'compare to v' + v.version, onchange: historyDiff })),
    el('td', {}, i === 0 ? '' : el('button', { type: 'button', class: 'write', disabled: ro, title: ro ? 'needs an admin token' : null, 'data-rollback': v.version, text: 'Roll back to v' + v.version, onclick: () => rollback(v.version) })),
  )), 8, 'No versions yet.');
  historyDiff();
}

function historyDiff() {
  const pick = (name) => { const c = document.querySelector('input[name=' + name + ']:checked'); return c && state.history.find((v) => v.version === Number(c.value)); };
  const a = pick('diff-a'), b = pick('diff-b');
  if (!a || !b) { $('pol-history-diff').textContent = 'Pick two versions.'; return; }
  showDiff($('pol-history-diff'), a.document, b.document, 'v' + a.version, 'v' + b.version);
}

async function rollback(version) {
  if (!await confirmDialog('Publish version ' + version + ' again as a new version? Every worker switches to it.')) return;
  try {
    const w = await api('POST', '/v1/policy/rollback', { version });
    status('pol-apply-result', 'Rolled back: version ' + w.version + ' is live (a copy of v' + version + ').', true);
    $('pol-editor').value = '';
    await loadPolicy();
  } catch (e) { status('pol-apply-result', 'Rollback failed: ' + e.message, false); }
}

function editorBody() {
  const body = { document: $('pol-editor').value };
  const f = $('pol-format').value;
  if (f) body.format = f;
  return body;
}

function gutter(errLines) {
  const n = $('pol-editor').value.split('\n').length;
  const g = $('pol-gutter');
  const spans = [];
  for (let i = 1; i <= n; i++) spans.push(el('span', { class: errLines.has(i) ? 'err' : null, text: String(i) }));
  g.replaceChildren(...spans);
  g.scrollTop = $('pol-editor').scrollTop;
}

function editorChanged() {
  const doc = $('pol-editor').value;
  gutter(state.errLines || new Set());
  showDiff($('pol-editor-diff'), state.policy ? state.policy.document : '', doc, state.policy ? 'v' + state.policy.version + ' (current)' : 'nothing', 'editor');
  clearTimeout(state.validateTimer);
  state.validateTimer = setTimeout(validate, 300);
}

function goToLine(line) {
  const t = $('pol-editor');
  const lines = t.value.split('\n');
  let pos = 0;
  for (let i = 0; i < line - 1 && i < lines.length; i++) pos += lines[i].length + 1;
  t.focus();
  t.setSelectionRange(pos, pos + (lines[line - 1] || '').length);
  t.scrollTop = Math.max(0, (line - 5) * 19);
}

async function validate() {
  const seq = ++state.validateSeq;
  const v = $('pol-validation');
  const applyButtons = [$('pol-apply'), $('pol-set-shadow')];
  if (!$('pol-editor').value.trim()) { v.className = 'validation'; v.textContent = 'Empty document.'; state.errLines = new Set(); gutter(state.errLines); return; }
  let res, err;
  try { res = await api('POST', '/v1/policy/validate', editorBody()); } catch (e) { err = e; }
  if (seq !== state.validateSeq) return;
  state.valid = !err;
  if (!err) {
    state.errLines = new Set();
    v.className = 'validation ok';
    v.textContent = 'Valid: ' + res.policies.length + ' rule' + (res.policies.length === 1 ? '' : 's') + ' (' + res.policies.join(', ') + ').';
  } else {
    const issues = (err.body && err.body.issues) || [{ path: '.', message: err.message }];
    state.errLines = new Set(issues.filter((i) => i.line).map((i) => i.line));
    v.className = 'validation';
    v.replaceChildren(el('ul', {}, ...issues.map((i) => el('li', { 'data-line': i.line || '' },
      i.line ? el('button', { type: 'button', class: 'link', text: 'line ' + i.line + (i.column ? ':' + i.column : ''), onclick: () => goToLine(i.line) }) : 'document',
      ' · ' + (i.key ? i.key + ' · ' : '') + i.path + ': ' + i.message))));
  }
  gutter(state.errLines);
  for (const b of applyButtons) b.disabled = state.role !== 'admin' || !state.valid;
}

async function applyPolicy() {
  if (!await confirmDialog('Publish the editor as a new policy version? Every worker switches to it between traces.')) return;
  const body = editorBody();
  const note = $('pol-note').value.trim();
  if (note) body.note = note;
  try {
    const w = await api('PUT', '/v1/policy', body);
    status('pol-apply-result', 'Applied: version ' + w.version + ' is live.', true);
    $('pol-note').value = '';
    await loadPolicy();
  } catch (e) {
    status('pol-apply-result', 'Not applied: ' + e.message, false);
  }
}

async function setShadow() {
  try {
    const w = await api('PUT', '/v1/policy/shadow', editorBody());
    status('pol-apply-result', 'Set as shadow (revision ' + w.shadow_revision + '). See the Shadow page.', true);
  } catch (e) { status('pol-apply-result', 'Not set: ' + e.message, false); }
}

// ---- Shadow --------------------------------------------------------------------------------

async function loadShadow(first) {
  const [s, cur] = await Promise.all([api('GET', '/v1/policy/shadow'), first || !state.policy ? api('GET', '/v1/policy') : Promise.resolve(null)]);
  if (cur) state.policy = cur.policy;
  const sh = s.shadow;
  const ro = state.role !== 'admin';
  $('sh-promote').disabled = ro || !sh;
  $('sh-clear').disabled = ro || !sh;
  setText('sh-revision', sh ? 'revision ' + sh.revision : 'none');
  setText('sh-meta', sh ? 'Set by ' + sh.author + ' at ' + when(sh.time_unix_ms) + ' · ' + sh.format + ' · compared with live v' + s.live_version + ' · ' + s.workers.length + ' worker(s) reporting' : 'No shadow policy is set.');
  const t = s.total, r = t.rates;
  const share = (k) => (r.traces_per_s > 0 ? pct(k / r.traces_per_s) + ' of traces' : ' ');
  setText('sh-traces', sh ? rate(r.traces_per_s) : '–');
  setText('sh-live', sh ? rate(r.live_kept_per_s) + '/s' : '–');
  setText('sh-live-share', sh ? share(r.live_kept_per_s) : ' ');
  setText('sh-shadow', sh ? rate(r.shadow_kept_per_s) + '/s' : '–');
  setText('sh-shadow-share', sh ? share(r.shadow_kept_per_s) : ' ');
  setText('sh-total', sh ? count(t.traces) : '–');
  setText('sh-total-detail', sh ? 'traces, ' + count(t.both_kept) + ' kept by both' : ' ');
  const names = [...new Set([...Object.keys(t.live_by_policy), ...Object.keys(t.by_policy), ...Object.keys(r.live_by_policy), ...Object.keys(r.by_policy)])].sort();
  const sh2 = (v) => (r.traces_per_s > 0 && v !== undefined ? pct(v / r.traces_per_s) : '–');
  fillBody($('sh-rules'), sh ? names.map((n) => el('tr', { 'data-rule': n },
    el('td', { class: 'id', text: n, title: n }),
    el('td', { class: 'num', text: rate(r.live_by_policy[n] || 0) }),
    el('td', { class: 'num', text: sh2(r.live_by_policy[n] || 0) }),
    el('td', { class: 'num', text: rate(r.by_policy[n] || 0) }),
    el('td', { class: 'num', text: sh2(r.by_policy[n] || 0) }),
    el('td', { class: 'num', text: count(t.live_by_policy[n] || 0) }),
    el('td', { class: 'num', text: count(t.by_policy[n] || 0) }))) : [], 7, sh ? 'No counts reported yet (workers report every 3 s).' : 'No shadow policy.');
  const docText = sh ? sh.document : '';
  if ($('sh-doc').textContent !== docText) {
    $('sh-doc').textContent = docText;
    if (sh) showDiff($('sh-diff'), state.policy ? state.policy.document : '', sh.document, 'live', 'shadow');
    else $('sh-diff').textContent = '';
  }
  state.shadow = sh;
}

async function promote() {
  const sh = state.shadow;
  if (!sh) return;
  if (!await confirmDialog('Publish the shadow policy (revision ' + sh.revision + ') as the new live version and remove the shadow?')) return;
  try {
    // One replicated entry: publish the shadow as the live version and remove it.
    const w = await api('POST', '/v1/policy/shadow/promote', { revision: sh.revision });
    status('sh-result', 'Promoted: version ' + w.version + ' is live.', true);
    await loadShadow(true);
  } catch (e) { status('sh-result', 'Not promoted: ' + e.message, false); }
}

async function clearShadow() {
  if (!await confirmDialog('Remove the shadow policy? Its counts are discarded.')) return;
  try { await api('DELETE', '/v1/policy/shadow'); status('sh-result', 'Shadow removed.', true); await loadShadow(true); }
  catch (e) { status('sh-result', 'Not removed: ' + e.message, false); }
}

// ---- Cluster -------------------------------------------------------------------------------

const SETTINGS = [
  ['history_limit', 'Versions kept for rollback (1–1000)', 'int', false],
  ['decision_wait_ms', 'sampler.decision_wait_ms', 'int', true],
  ['send_delay_ms', 'sampler.send_delay_ms', 'int', true],
  ['soft_limit_bytes', 'sampler.soft_limit_bytes', 'int', true],
  ['hard_limit_bytes', 'sampler.hard_limit_bytes', 'int', true],
  ['stress_probability', 'sampler.stress_probability (0–1)', 'num', true],
];

async function loadCluster(first) {
  const [c, pol, nodes] = await Promise.all([api('GET', '/v1/cluster/status'), api('GET', '/v1/policy'), api('GET', '/v1/cluster/nodes')]);
  const leader = c.leader;
  setText('cl-talking', 'You are talking to node ' + c.node + ' (' + c.state.toLowerCase() + ')' + (leader ? '; the leader is node ' + leader + '.' : '; no leader is known.'));
  const facts = [['This node', String(c.node)], ['State', c.state], ['Leader', leader ? String(leader) : 'none'], ['Term', String(c.term)],
    ['Commit index', String(c.commit_index)], ['Applied index', String(c.applied_index ?? '–')], ['Last log index', String(c.last_log_index ?? '–')],
    ['Policy version', String(c.policy_version)]];
  $('cl-facts').replaceChildren(...facts.map(([k, v]) => el('div', {}, el('dt', { text: k }), el('dd', { text: v, 'data-fact': k }))));
  const idx = (v) => (v === null || v === undefined ? '–' : String(v));
  fillBody($('cl-members'), nodes.nodes.map((m) => {
    const st = m.status;
    const role = el('td', {}, m.voter ? 'voter' : 'learner');
    if (st && st.state === 'Leader') role.append(el('span', { class: 'flag leader', text: 'LEADER' }));
    if (m.this_node) role.append(el('span', { class: 'flag you', text: 'YOU' }));
    return el('tr', { 'data-node': m.id },
      el('td', { class: 'num', text: String(m.id) }), role,
      st ? el('td', { text: st.state }) : el('td', { class: 'bad-text', text: 'unreachable', title: m.error || '' }),
      el('td', { class: 'num', text: st ? String(st.term) : '–' }),
      el('td', { class: 'num', text: st ? String(st.commit_index) : '–' }),
      el('td', { class: 'num', text: st ? idx(st.applied_index) : '–' }),
      el('td', { class: 'num', text: st ? idx(st.last_log_index) : '–' }),
      el('td', { class: 'id', text: m.raft_addr }), el('td', { class: 'id', text: m.admin_addr }),
      el('td', {}, m.this_node ? 'this page' : el('a', { href: location.protocol + '//' + m.admin_addr + '/ui/', text: 'open' })));
  }), 10, 'No members.');
  const s = pol.seeds;
  setText('cl-seed', 'Epoch ' + s.current.epoch + ', in force from policy version ' + s.current.effective_version + '.' + (s.next ? ' A rotated seed (epoch ' + s.next.epoch + ') takes effect with version ' + s.next.effective_version + '.' : ''));
  if (first) {
    const st = await api('GET', '/v1/settings');
    setText('cl-settings-rev', 'revision ' + st.revision);
    const vals = Object.assign({ history_limit: st.settings.history_limit }, st.settings.sampler || {});
    $('cl-settings').replaceChildren(...SETTINGS.map(([k, label, kind, opt]) => el('label', {}, label,
      el('input', { id: 'set-' + k, type: 'text', inputmode: kind === 'int' ? 'numeric' : 'decimal', value: vals[k] ?? '', placeholder: opt ? 'worker default' : '', disabled: state.role !== 'admin', oninput: checkSettings }))));
  }
}

function readSettings() {
  const out = { history_limit: 20, sampler: {} };
  let ok = true;
  for (const [k, , kind, opt] of SETTINGS) {
    const i = $('set-' + k);
    const v = i.value.trim();
    let bad = false, n = null;
    if (v === '') bad = !opt;
    else {
      n = Number(v);
      bad = !Number.isFinite(n) || (kind === 'int' && (!Number.isInteger(n) || n < 0)) || (k === 'stress_probability' && (n < 0 || n > 1));
    }
    i.setAttribute('aria-invalid', bad ? 'true' : 'false');
    ok = ok && !bad;
    if (n === null || bad) continue;
    if (k === 'history_limit') out.history_limit = n; else out.sampler[k] = n;
  }
  return ok ? out : null;
}
function checkSettings() { $('cl-settings-save').disabled = state.role !== 'admin' || !readSettings(); }

async function saveSettings() {
  const s = readSettings();
  if (!s) { status('cl-settings-result', 'Fix the marked fields.', false); return; }
  try {
    const w = await api('PUT', '/v1/settings', { settings: s });
    status('cl-settings-result', 'Saved: revision ' + w.revision + '.', true);
    setText('cl-settings-rev', 'revision ' + w.revision);
  } catch (e) { status('cl-settings-result', 'Not saved: ' + e.message, false); }
}

async function rotateSeed() {
  if (!await confirmDialog('Schedule a new random hash seed? It takes effect with the next policy version; until then workers keep the current one.')) return;
  try { const w = await api('POST', '/v1/seed/rotate'); status('cl-rotate-result', 'Scheduled for version ' + (w.seeds.next ? w.seeds.next.effective_version : w.version + 1) + '.', true); await loadCluster(false); }
  catch (e) { status('cl-rotate-result', 'Not rotated: ' + e.message, false); }
}

// ---- Captures ------------------------------------------------------------------------------

async function loadCaptures() {
  const list = await api('GET', '/v1/captures');
  const span = (c) => when(c.since_unix_ms) + ' – ' + when(c.until_unix_ms);
  fillBody($('cap-list'), list.captures.map((c) => {
    const t = c.total;
    const parts = c.partitions === null || c.partitions === undefined
      ? (c.in_progress.length ? c.in_progress.length + ' reading' : 'waiting for workers')
      : (t.partitions_done + t.partitions_failed) + ' / ' + c.partitions + (t.partitions_failed ? ' (' + t.partitions_failed + ' failed)' : '');
    const waiting = c.state === 'running' && Date.now() < c.read_until_unix_ms;
    const st = el('td', { 'data-state': c.state }, c.state + (waiting ? ' (reads from ' + when(c.read_until_unix_ms) + ')' : ''));
    const cancel = c.state === 'running'
      ? el('button', { type: 'button', class: 'write', 'data-cancel': c.id, disabled: state.role !== 'admin', title: state.role !== 'admin' ? 'needs an admin token' : null, onclick: () => cancelCapture(c.id), text: 'Cancel' })
      : null;
    return el('tr', { 'data-capture': c.id },
      el('td', { class: 'num', text: String(c.id) }),
      el('td', { class: 'id', text: c.description, title: c.author ? 'by ' + c.author : null }),
      el('td', { text: span(c) }),
      st,
      el('td', { class: 'num', text: parts }),
      el('td', { class: 'num', text: count(t.traces_exported) }),
      el('td', { class: 'num', text: count(t.traces_already_kept) }),
      el('td', { class: 'num', text: count(t.spans_exported) }),
      el('td', { class: c.retention ? 'bad-text' : 'muted', text: c.retention || 'whole window' }),
      el('td', {}, cancel));
  }), 10, 'No captures yet.');
}

async function startCapture() {
  const match = $('cap-match').value.trim();
  const since = $('cap-since').value.trim();
  const description = $('cap-description').value.trim();
  if (!match) { status('cap-result', 'Write a match condition.', false); $('cap-match').focus(); return; }
  if (!since) { status('cap-result', 'Say how far back the window starts, such as 20m.', false); $('cap-since').focus(); return; }
  const body = { match, since };
  if (description) body.description = description;
  try {
    const w = await api('POST', '/v1/captures', body);
    status('cap-result', 'Capture ' + w.id + ' started: workers read ' + when(w.since_unix_ms) + ' – ' + when(w.until_unix_ms) +
      ' from the spans topic once ' + when(w.read_until_unix_ms) + ' has passed (the decision wait after the window, so running traces are complete). ' +
      'Records the topic\'s retention already deleted cannot be captured: the list below says if the window was cut.', true);
    await loadCaptures();
  } catch (e) { status('cap-result', 'Not started: ' + e.message, false); }
}

async function cancelCapture(id) {
  if (!await confirmDialog('Cancel capture ' + id + '? Partitions already exported stay exported; the others are not read.')) return;
  try { await api('DELETE', '/v1/captures/' + id); status('cap-result', 'Capture ' + id + ' cancelled.', true); await loadCaptures(); }
  catch (e) { status('cap-result', 'Not cancelled: ' + e.message, false); }
}

// ---- Confirmation --------------------------------------------------------------------------

function confirmDialog(text) {
  const d = $('confirm');
  $('confirm-text').textContent = text;
  return new Promise((resolve) => {
    const done = (v) => { d.close(); $('confirm-yes').onclick = null; $('confirm-no').onclick = null; d.oncancel = null; resolve(v); };
    $('confirm-yes').onclick = () => done(true);
    $('confirm-no').onclick = () => done(false);
    d.oncancel = (e) => { e.preventDefault(); done(false); };
    d.showModal();
    $('confirm-no').focus();
  });
}

// ---- Start ---------------------------------------------------------------------------------

document.addEventListener('DOMContentLoaded', () => {
  $('signin-form').addEventListener('submit', (e) => { e.preventDefault(); signIn($('token').value.trim()); });
  $('signout').addEventListener('click', () => signOut('Signed out.'));
  $('pol-editor').addEventListener('input', editorChanged);
  $('pol-editor').addEventListener('scroll', () => { $('pol-gutter').scrollTop = $('pol-editor').scrollTop; });
  $('pol-editor').addEventListener('keydown', (e) => {
    // Tab indents (two spaces); Escape then Tab leaves the editor, so the keyboard is never trapped.
    if (e.key === 'Tab' && !e.shiftKey && !state.escaped) {
      e.preventDefault();
      const t = e.target, s = t.selectionStart;
      t.setRangeText('  ', s, t.selectionEnd, 'end');
      editorChanged();
    }
    state.escaped = e.key === 'Escape';
  });
  $('pol-format').addEventListener('change', editorChanged);
  $('pol-load-current').addEventListener('click', () => { $('pol-editor').value = state.policy ? state.policy.document : ''; editorChanged(); });
  $('pol-apply').addEventListener('click', applyPolicy);
  $('pol-set-shadow').addEventListener('click', setShadow);
  $('sh-promote').addEventListener('click', promote);
  $('sh-clear').addEventListener('click', clearShadow);
  $('cap-start').addEventListener('click', startCapture);
  $('cap-form').addEventListener('submit', (e) => { e.preventDefault(); startCapture(); });
  $('cl-rotate').addEventListener('click', rotateSeed);
  $('cl-settings-save').addEventListener('click', saveSettings);
  window.addEventListener('hashchange', () => { route(); $('main').focus(); });
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) signIn(saved); else signOut('');
});
