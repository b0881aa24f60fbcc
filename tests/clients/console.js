// Drives the admin console in a real headless Chromium (puppeteer-core over the DevTools
// protocol) against a running coordinator cluster with samplers and traffic; run by
// tests/tests/console.rs, which starts all of that and checks the API afterwards.
//
// Environment: TAILSIFT_PUPPETEER (a node_modules directory with puppeteer-core), CHROMIUM (the
// browser binary), CONSOLE_URL (`http://<admin addr>/ui/` of one coordinator), ADMIN_TOKEN,
// READ_TOKEN, WORKERS (how many workers report), SCREENSHOTS (a directory for the PNGs).
// Prints one line per step; exits 1 with the reason (and failure.png) on the first failed check.
'use strict';

const path = require('path');
const puppeteer = require(path.join(process.env.TAILSIFT_PUPPETEER, 'puppeteer-core'));

const URL_ = process.env.CONSOLE_URL;
const ADMIN = process.env.ADMIN_TOKEN;
const READ = process.env.READ_TOKEN;
const WORKERS = Number(process.env.WORKERS || '1');
const SHOTS = process.env.SCREENSHOTS;
const STEP_TIMEOUT = 45000;

const INVALID = [
  'policies:',
  '  - name: errors',
  '    status_code: { codes: [ERROR] }',
  '  - name: sample',
  '    probabilistic:',
  '      percentage: 200',
  '',
].join('\n');
const EDITED = [
  'policies:',
  '  - name: errors',
  '    status_code: { codes: [ERROR] }',
  '  - name: slow',
  '    latency: { threshold_ms: 1000 }',
  '  - name: sample',
  '    probabilistic: { percentage: 25 }',
  '',
].join('\n');
const OTEL_INVALID = [
  'processors:',
  '  tail_sampling:',
  '    decision_wait: 10s',
  '    policies:',
  '      - name: errors',
  '        type: status_code',
  '        status_code: { status_codes: [ERROR] }',
  '      - name: sample',
  '        type: probabilistic',
  '        probabilistic:',
  '          sampling_percentage: 250',
  '',
].join('\n');
const SHADOW = 'policies:\n  - name: errors\n    status_code: { codes: [ERROR] }\n  - name: everything\n    always: {}\n';

const started = Date.now();
function step(what) { console.log(`[${((Date.now() - started) / 1000).toFixed(1)}s] ${what}`); }
function check(cond, what) { if (!cond) throw new Error('check failed: ' + what); }

async function main() {
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu', '--no-first-run', '--no-default-browser-check'],
    defaultViewport: { width: 1440, height: 900 },
  });
  const page = await browser.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT);
  const problems = [];
  // The browser logs the refused sign-in (401), the forced read-only write (403) and the
  // validation of the invalid policy (400).
  const expected = /^Failed to load resource: the server responded with a status of 40[013]/;
  page.on('console', (m) => { if (m.type() === 'error' && !expected.test(m.text())) problems.push('console error: ' + m.text()); });
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  page.on('requestfailed', (r) => { if (!r.url().startsWith(new URL(URL_).origin)) problems.push('request outside the origin: ' + r.url()); });
  const outside = [];
  await page.setRequestInterception(true);
  page.on('request', (r) => {
    if (!r.url().startsWith(new URL(URL_).origin) && !r.url().startsWith('data:')) { outside.push(r.url()); r.abort(); } else r.continue();
  });
  const shot = (name) => page.screenshot({ path: path.join(SHOTS, name + '.png') });
  try {
    await run(page, shot);
    check(outside.length === 0, 'no request leaves the coordinator: ' + outside.join(', '));
    check(problems.length === 0, 'no script errors: ' + problems.join('; '));
  } catch (e) {
    try { await page.screenshot({ path: path.join(SHOTS, 'failure.png') }); } catch (_) { /* the browser may be gone */ }
    console.error(e.stack || String(e));
    if (problems.length) console.error(problems.join('\n'));
    await browser.close();
    process.exit(1);
  }
  await browser.close();
  step('done');
}

const text = (page, sel) => page.$eval(sel, (e) => e.textContent);
const visible = (page, sel) => page.waitForSelector(sel, { visible: true });

async function signIn(page, token) {
  await visible(page, '#token');
  // Keyboard only: focus the field by tabbing (skip link first), type, press Enter.
  await page.focus('body');
  for (let i = 0; i < 4; i++) {
    await page.keyboard.press('Tab');
    if (await page.evaluate(() => document.activeElement && document.activeElement.id === 'token')) break;
  }
  check(await page.evaluate(() => document.activeElement.id === 'token'), 'the token field is reached with Tab');
  await page.keyboard.type(token);
  await page.keyboard.press('Enter');
}

async function go(page, hash, ready) {
  await page.evaluate((h) => { location.hash = h; }, hash);
  await page.waitForSelector(ready, { visible: true });
}

async function run(page, shot) {
  const resp = await page.goto(URL_, { waitUntil: 'load' });
  const csp = resp.headers()['content-security-policy'] || '';
  check(csp.includes("default-src 'none'") && csp.includes("script-src 'self'") && csp.includes("connect-src 'self'"), 'strict CSP on the page: ' + csp);
  step('page served with CSP: ' + csp);

  // A wrong token stays on the sign-in form with the reason.
  await signIn(page, 'not-a-token');
  await page.waitForFunction(() => document.getElementById('signin-reason').textContent.includes('not accepted'));
  check(!(await page.evaluate(() => sessionStorage.getItem('tailsift.console.token'))), 'a refused token is not kept');
  await shot('signin');
  step('wrong token refused with its reason');

  // Read-only: everything visible, every write control disabled.
  await signIn(page, READ);
  await go(page, '#/overview', '#page-overview');
  await page.waitForFunction(() => !document.getElementById('banner').hidden);
  await go(page, '#/policy', '#page-policy');
  await page.waitForSelector('#pol-history tbody tr[data-version]');
  const enabledWrites = await page.$$eval('button.write', (bs) => bs.filter((b) => !b.disabled).map((b) => b.id || b.textContent));
  check(enabledWrites.length === 0, 'read-only: every write control disabled, enabled: ' + enabledWrites.join(', '));
  check(await page.$eval('#pol-apply', (b) => b.disabled), 'read-only: apply disabled');
  await go(page, '#/cluster', '#page-cluster');
  await page.waitForSelector('#set-history_limit');
  check(await page.$eval('#cl-rotate', (b) => b.disabled), 'read-only: rotate disabled');
  check(await page.$eval('#set-history_limit', (b) => b.disabled), 'read-only: settings disabled');
  await go(page, '#/captures', '#page-captures');
  check(await page.$eval('#cap-start', (b) => b.disabled), 'read-only: no capture can be started');
  // Even a write forced from the page is refused by the API (403), not just hidden.
  const forced = await page.evaluate(async () => (await fetch('/v1/seed/rotate', { method: 'POST', headers: { authorization: 'Bearer ' + sessionStorage.getItem('tailsift.console.token') } })).status);
  check(forced === 403, 'read-only write refused by the API: ' + forced);
  step('read-only token: pages shown, writes disabled and refused');
  await page.click('#signout');
  await visible(page, '#signin');

  // A token that stops being accepted sends the page back to sign-in with the reason.
  await signIn(page, ADMIN);
  await visible(page, '#top');
  await page.evaluate(() => sessionStorage.setItem('tailsift.console.token', 'revoked-token'));
  await page.reload({ waitUntil: 'load' });
  await page.waitForFunction(() => !document.getElementById('signin').hidden && document.getElementById('signin-reason').textContent.includes('not accepted'));
  step('a token no longer accepted returns to sign-in');

  await signIn(page, ADMIN);
  await go(page, '#/overview', '#page-overview');
  // The header names the user once the sign-in's `/v1/me` has answered (asynchronously).
  await page.waitForFunction(() => document.getElementById('who').textContent.includes('admin'))
    .catch(async () => check(false, 'signed in as admin: ' + await text(page, '#who')));
  // Live numbers from the workers' reports.
  await page.waitForFunction((n) => {
    const rows = document.querySelectorAll('#ov-workers tbody tr[data-worker]');
    const rules = document.querySelectorAll('#ov-rules tbody td.id');
    const spans = document.getElementById('ov-spans-in').textContent;
    return rows.length === n && rules.length > 0 && spans !== '–' && Number(spans.replace(/[^0-9.]/g, '')) > 0;
  }, { timeout: 60000 }, WORKERS);
  // No layout shift while the data refreshes (three refreshes).
  const shift = await page.evaluate(() => new Promise((resolve) => {
    let total = 0;
    new PerformanceObserver((l) => { for (const e of l.getEntries()) if (!e.hadRecentInput) total += e.value; }).observe({ type: 'layout-shift' });
    setTimeout(() => resolve(total), 6500);
  }));
  check(shift < 0.01, 'cumulative layout shift while refreshing: ' + shift);
  await shot('overview');
  step('overview: rates, rules and ' + WORKERS + ' workers; layout shift ' + shift.toFixed(4));

  // Keyboard only: Tab from the top reaches the Policy link; Enter opens the page.
  await page.evaluate(() => { document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0); });
  await page.focus('body');
  for (let i = 0; i < 6 && !(await page.evaluate(() => document.activeElement.id === 'nav-policy')); i++) await page.keyboard.press('Tab');
  check(await page.evaluate(() => document.activeElement.id === 'nav-policy'), 'the Policy link is reached with Tab');
  await page.keyboard.press('Enter');
  await visible(page, '#page-policy');
  step('keyboard: Tab to the Policy link, Enter opens it');

  // Policy: an invalid edit shows its error at its line.
  await go(page, '#/policy', '#page-policy');
  await page.waitForFunction(() => document.getElementById('pol-version').textContent.startsWith('v'));
  const v1 = Number((await text(page, '#pol-version')).slice(1));
  const setEditor = (doc) => page.evaluate((d) => {
    const t = document.getElementById('pol-editor');
    t.value = d;
    t.dispatchEvent(new Event('input'));
  }, doc);
  await page.click('#pol-editor');
  await setEditor(INVALID.slice(0, -20));
  await page.keyboard.type(INVALID.slice(-20), { delay: 5 });
  await page.waitForSelector('#pol-validation li[data-line="6"]');
  const err = await text(page, '#pol-validation');
  check(err.includes('line 6') && err.includes('percentage'), 'error names line 6 and the key: ' + err);
  check(await page.$eval('#pol-gutter span:nth-child(6)', (s) => s.classList.contains('err')), 'line 6 marked in the gutter');
  check(await page.$eval('#pol-apply', (b) => b.disabled), 'an invalid policy cannot be applied');
  await page.$eval('#pol-edit-card', (c) => c.scrollIntoView());
  await shot('policy-invalid');
  step('invalid policy: ' + err.trim());

  // The same in the OTel tail_sampling format, chosen explicitly.
  await page.select('#pol-format', 'otel_tail_sampling');
  await setEditor(OTEL_INVALID);
  await page.waitForSelector('#pol-validation li[data-line="11"]');
  const otelErr = await text(page, '#pol-validation');
  check(otelErr.includes('sampling_percentage'), 'OTel error names its key: ' + otelErr);
  await setEditor(OTEL_INVALID.replace('250', '25'));
  await page.waitForFunction(() => document.getElementById('pol-validation').className.includes('ok'));
  await page.select('#pol-format', '');
  step('invalid OTel policy: ' + otelErr.trim());

  // A valid edit: validated, diffed against the current version, applied as a new version.
  await setEditor(EDITED);
  await page.waitForFunction(() => document.getElementById('pol-validation').textContent.includes('3 rules (errors, slow, sample)'));
  const diff = await page.$$eval('#pol-editor-diff .add', (l) => l.map((e) => e.textContent));
  check(diff.some((l) => l.includes('name: slow')), 'the diff shows the added rule: ' + diff.join(' | '));
  await page.type('#pol-note', 'add a latency rule, sample 25%');
  await page.click('#pol-apply');
  await visible(page, '#confirm');
  await page.click('#confirm-yes');
  await page.waitForFunction((v) => document.getElementById('pol-version').textContent === 'v' + (v + 1), {}, v1);
  check((await text(page, '#pol-meta')).includes('add a latency rule'), 'the note is shown with the version');
  step('applied version ' + (v1 + 1));

  // Every worker moves to the new version, on the overview.
  await go(page, '#/overview', '#page-overview');
  await page.waitForFunction((v, n) => {
    const rows = [...document.querySelectorAll('#ov-workers tbody tr[data-worker]')];
    return rows.length === n && rows.every((r) => r.dataset.version === String(v)) && !document.querySelector('#ov-workers .flag.behind');
  }, { timeout: 60000 }, v1 + 1, WORKERS);
  step('every worker on version ' + (v1 + 1));

  // History diff and rollback (with confirmation) to the first version.
  await go(page, '#/policy', '#page-policy');
  await page.waitForSelector(`#pol-history tbody tr[data-version="${v1 + 1}"]`);
  await page.waitForFunction(() => document.querySelectorAll('#pol-history-diff .add, #pol-history-diff .del').length > 0);
  await page.$eval('#pol-history-card', (c) => c.scrollIntoView());
  await shot('policy');
  // Escape cancels the confirmation: nothing is published.
  await page.click(`button[data-rollback="${v1}"]`);
  await visible(page, '#confirm');
  await page.keyboard.press('Escape');
  await page.waitForSelector('#confirm', { hidden: true });
  check((await text(page, '#pol-version')) === 'v' + (v1 + 1), 'Escape cancelled the rollback');
  await page.click(`button[data-rollback="${v1}"]`);
  await visible(page, '#confirm');
  await page.click('#confirm-yes');
  await page.waitForFunction((v) => document.getElementById('pol-version').textContent === 'v' + (v + 2), {}, v1);
  check((await text(page, '#pol-meta')).includes('Rollback of v' + v1), 'rollback shown: ' + await text(page, '#pol-meta'));
  step('rolled back: version ' + (v1 + 2) + ' is a copy of v' + v1);

  // Shadow: set a candidate from the editor; per-rule counts of both policies appear.
  await setEditor(SHADOW);
  await page.waitForFunction(() => document.getElementById('pol-validation').textContent.includes('(errors, everything)'));
  await page.click('#pol-set-shadow');
  await page.waitForFunction(() => document.getElementById('pol-apply-result').textContent.includes('shadow'));
  await go(page, '#/shadow', '#page-shadow');
  await page.waitForFunction(() => {
    const row = document.querySelector('#sh-rules tbody tr[data-rule="everything"]');
    return row && Number(row.cells[6].textContent.replace(/,/g, '')) > 0 && Number(row.cells[3].textContent) > 0;
  }, { timeout: 60000 });
  await shot('shadow');
  step('shadow counts per rule: ' + (await text(page, '#sh-total-detail')));

  // Cluster: members, leader, term and indexes of the node the page talks to.
  await go(page, '#/cluster', '#page-cluster');
  await page.waitForSelector('#cl-members .flag.leader');
  await page.waitForFunction(() => {
    // Every member answered with its own term and commit index.
    const rows = [...document.querySelectorAll('#cl-members tbody tr[data-node]')];
    return rows.length === 3 && rows.every((r) => /^\d+$/.test(r.cells[3].textContent) && /^\d+$/.test(r.cells[4].textContent));
  });
  check((await text(page, '#cl-talking')).startsWith('You are talking to node'), 'names the node');
  // Live settings: validated in the page, then by the server; the seed rotation, confirmed.
  const setField = (id, v) => page.$eval(id, (i, val) => { i.value = val; i.dispatchEvent(new Event('input')); }, v);
  await setField('#set-stress_probability', '2');
  check(await page.$eval('#set-stress_probability', (i) => i.getAttribute('aria-invalid') === 'true'), 'a probability of 2 is marked invalid');
  check(await page.$eval('#cl-settings-save', (b) => b.disabled), 'invalid settings cannot be saved');
  await setField('#set-stress_probability', '');
  await setField('#set-send_delay_ms', '300');
  await page.click('#cl-settings-save');
  await page.waitForFunction(() => document.getElementById('cl-settings-result').textContent.startsWith('Saved: revision'));
  await page.click('#cl-rotate');
  await visible(page, '#confirm');
  await page.click('#confirm-yes');
  await page.waitForFunction(() => document.getElementById('cl-rotate-result').textContent.startsWith('Scheduled'));
  await page.waitForFunction(() => document.getElementById('cl-seed').textContent.includes('rotated seed'));
  await shot('cluster');
  step('cluster: ' + (await text(page, '#cl-talking')) + ' ' + (await text(page, '#cl-settings-result')) + ' ' + (await text(page, '#cl-rotate-result')));

  // Promote the shadow to live in one step.
  await go(page, '#/shadow', '#page-shadow');
  await page.waitForFunction(() => !document.getElementById('sh-promote').disabled);
  await page.click('#sh-promote');
  await visible(page, '#confirm');
  await page.click('#confirm-yes');
  await page.waitForFunction(() => document.getElementById('sh-result').textContent.startsWith('Promoted'));
  await page.waitForFunction(() => document.getElementById('sh-revision').textContent === 'none');
  step('shadow promoted: ' + (await text(page, '#sh-result')));

  // Captures: an invalid match is refused with the server's reason; a valid one is listed as
  // running (waiting for the end of its window) and can be cancelled, with confirmation.
  await go(page, '#/captures', '#page-captures');
  await page.waitForFunction(() => document.querySelector('#cap-list tbody td') !== null);
  await page.type('#cap-match', 'name ==');
  await page.click('#cap-start');
  await page.waitForFunction(() => document.getElementById('cap-result').textContent.startsWith('Not started'));
  check((await page.$eval('#cap-result', (e) => e.className)) === 'bad-text', 'the refusal is marked as an error');
  step('invalid capture refused: ' + (await text(page, '#cap-result')));
  await page.$eval('#cap-match', (i) => { i.value = ''; });
  await page.type('#cap-match', 'resource.attributes["service.name"] == "checkout"');
  await page.$eval('#cap-since', (i) => { i.value = ''; });
  await page.type('#cap-since', '5m');
  await page.type('#cap-description', 'checkout incident');
  await page.click('#cap-start');
  await page.waitForFunction(() => /^Capture \d+ started/.test(document.getElementById('cap-result').textContent));
  const capId = (await text(page, '#cap-result')).match(/^Capture (\d+)/)[1];
  await page.waitForSelector(`#cap-list tr[data-capture="${capId}"] td[data-state="running"]`);
  const capRow = await page.$eval(`#cap-list tr[data-capture="${capId}"]`, (r) => [...r.cells].map((c) => c.textContent));
  check(capRow[1] === 'checkout incident', 'the capture is listed with its note: ' + capRow.join(' | '));
  await shot('captures');
  await page.click(`button[data-cancel="${capId}"]`);
  await visible(page, '#confirm');
  await page.click('#confirm-yes');
  await page.waitForSelector(`#cap-list tr[data-capture="${capId}"] td[data-state="cancelled"]`);
  check(await page.$(`button[data-cancel="${capId}"]`) === null, 'a cancelled capture has no cancel button');
  step('capture ' + capId + ' started and cancelled from the page: ' + capRow.join(' | '));
}

main().catch((e) => { console.error(e.stack || String(e)); process.exit(1); });
