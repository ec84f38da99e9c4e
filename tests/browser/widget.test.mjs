// The connect widget and the admin console in a real browser: Debian's Chromium driven by playwright-core,
// against `keyway serve --dev` (the built-in sandbox provider) and a host page on another
// origin that loads keyway.js. Each scenario saves screenshots under
// tests/browser/screenshots/ (the README's images come from there).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { createHash } from 'node:crypto';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { freePort, Processes } from '../lib/harness.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const bin = resolve(process.env.KEYWAY_BIN || join(here, '../../target/debug/keyway'));
const shots = join(here, 'screenshots');
const procs = new Processes();
let dir, keyway, port, adminKey, app, hostServer, hostOrigin, browser;

function cleanEnv() {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('KEYWAY_')));
}

async function startKeyway() {
  await procs.start(bin, ['serve', '--dev', '--listen', `127.0.0.1:${port}`, '--data-dir', join(dir, 'data')], cleanEnv(), 'keyway token --integration sandbox');
}

async function api(method, path, key, body) {
  const r = await fetch(`${keyway}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

async function connectUrl(user) {
  const s = await api('POST', '/v1/connect/sessions', app.key, { user_id: user, integrations: ['sandbox'] });
  assert.equal(s.status, 201, JSON.stringify(s.body));
  return s.body.url;
}

// The application's page: loads keyway.js from Keyway and records every result.
function hostPage(url) {
  return `<!doctype html><html><head><meta charset="utf-8"><title>Acme Notes</title>
<script src="${keyway}/assets/keyway.js"></script>
<style>body{font:16px system-ui;margin:2rem;background:#fafafa} #inline{max-width:36rem;background:#fff}</style></head>
<body><h1>Acme Notes — settings</h1>
<button id="popup">Connect accounts (popup)</button>
<button id="inline-btn">Connect accounts (inline)</button>
<div id="inline"></div>
<pre id="results"></pre>
<script>
  const url = ${JSON.stringify(url)};
  const onResult = (r) => { document.getElementById('results').textContent += JSON.stringify(r) + '\\n'; };
  document.getElementById('popup').onclick = () => Keyway.open(url, { mode: 'popup', onResult });
  document.getElementById('inline-btn').onclick = () => Keyway.open(url, { mode: 'inline', container: '#inline', onResult, height: 420 });
</script></body></html>`;
}

let currentHostHtml = '';
let framingHtml = '';

before(async () => {
  mkdirSync(shots, { recursive: true });
  dir = mkdtempSync(join(tmpdir(), 'keyway-browser-'));
  port = await freePort();
  keyway = `http://127.0.0.1:${port}`;
  await startKeyway();
  adminKey = procs.logs.match(/admin key:\s+(\S+)/)[1];

  // The host page is on another site (localhost, not 127.0.0.1), as an application's is.
  const hostPort = await freePort();
  hostOrigin = `http://localhost:${hostPort}`;
  hostServer = createServer((req, res) => {
    if (req.url === '/logo.svg') {
      res.setHeader('content-type', 'image/svg+xml');
      res.end('<svg xmlns="http://www.w3.org/2000/svg" width="170" height="32"><rect width="32" height="32" rx="6" fill="#0a7c59"/><text x="40" y="23" font-family="sans-serif" font-size="20" fill="#0a7c59">Acme Notes</text></svg>');
      return;
    }
    res.setHeader('content-type', 'text/html; charset=utf-8');
    res.end(req.url === '/framing' ? framingHtml : currentHostHtml);
  });
  await new Promise((r) => hostServer.listen(hostPort, '127.0.0.1', r));

  const a = await api('POST', '/v1/applications', adminKey, { name: 'Acme Notes', return_urls: [], allowed_origins: [hostOrigin] });
  assert.equal(a.status, 201, JSON.stringify(a.body));
  const k = await api('POST', `/v1/applications/${a.body.id}/api-keys`, adminKey, { name: 'backend' });
  app = { id: a.body.id, key: k.body.key };
  // The application's look, through its settings.
  const themed = await api('PATCH', `/v1/applications/${app.id}`, adminKey, { branding: { accent_color: '#0a7c59', logo_url: `${hostOrigin}/logo.svg` } });
  assert.equal(themed.status, 200, JSON.stringify(themed.body));

  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
  });
});

after(async () => {
  if (browser) await browser.close();
  if (hostServer) hostServer.close();
  procs.stopAll();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function approveInSandbox(win, account) {
  await win.waitForURL(/\/sandbox\/oauth\/authorize/);
  await win.getByLabel('Sandbox account name').fill(account);
  await win.screenshot({ path: join(shots, 'sandbox-consent.png') });
  await win.getByRole('button', { name: 'Approve' }).click();
}

async function results(page, n) {
  await page.waitForFunction((n) => document.getElementById('results').textContent.trim().split('\n').filter(Boolean).length >= n, n);
  return (await page.textContent('#results')).trim().split('\n').map((l) => JSON.parse(l));
}

test('connect through the widget opened by keyway.js in a popup; the host page hears the result', async () => {
  const url = await connectUrl('ada');
  currentHostHtml = hostPage(url);
  const page = await browser.newPage();
  await page.goto(hostOrigin);
  const [popup] = await Promise.all([page.waitForEvent('popup'), page.click('#popup')]);
  await popup.waitForLoadState();
  await popup.getByRole('heading', { name: 'Connect your accounts' }).waitFor();
  // S9: who is connecting what, before any provider is contacted.
  assert.match(await popup.textContent('main'), /Acme Notes[\s\S]*ada/);
  // Themed: the application's accent colour and logo.
  assert.equal(await popup.evaluate(() => getComputedStyle(document.documentElement).getPropertyValue('--accent').trim()), '#0a7c59');
  await popup.locator('img.app-logo').evaluate((img) => img.decode());
  await popup.screenshot({ path: join(shots, 'widget.png') });
  await popup.getByRole('button', { name: 'Connect Keyway Sandbox' }).click();
  await approveInSandbox(popup, 'Ada Lovelace');
  const [r] = await results(page, 1);
  assert.equal(r.type, 'keyway:connected');
  assert.equal(r.integration, 'sandbox');
  assert.equal(r.account, 'Ada Lovelace');
  assert.match(r.connection_id, /^conn_/);
  await page.screenshot({ path: join(shots, 'host-result.png') });
  if (!popup.isClosed()) await popup.waitForEvent('close', { timeout: 5000 });
  const t = await api('POST', '/v1/token', app.key, { integration: 'sandbox', user_id: 'ada' });
  assert.equal(t.status, 200);
  assert.equal(t.body.connection_id, r.connection_id);
  await page.close();
});

test('the inline widget in an iframe connects through its own window and reports to the host', async () => {
  const url = await connectUrl('grace');
  currentHostHtml = hostPage(url);
  const page = await browser.newPage();
  await page.goto(hostOrigin);
  await page.click('#inline-btn');
  const frame = page.frameLocator('#inline iframe');
  await frame.getByRole('heading', { name: 'Connect your accounts' }).waitFor();
  await page.screenshot({ path: join(shots, 'widget-inline.png') });
  const [win] = await Promise.all([page.waitForEvent('popup'), frame.getByRole('link', { name: /Connect Keyway Sandbox/ }).click()]);
  await win.waitForLoadState();
  // The confirmation page in its own window: first-party, so the browser binding holds.
  await win.getByRole('button', { name: 'Continue to Keyway Sandbox' }).click();
  await approveInSandbox(win, 'Grace Hopper');
  const [r] = await results(page, 1);
  assert.equal(r.type, 'keyway:connected');
  assert.equal(r.account, 'Grace Hopper');
  // The iframe refreshed itself and shows the new state.
  await frame.getByText('Connected as Grace Hopper').waitFor();
  await page.screenshot({ path: join(shots, 'widget-inline-connected.png') });
  await page.close();
});

test('an agent asks for access: dev login, the approval page (unframeable), a token', async () => {
  // Approvals for this application go through the dev login, which identifies the user.
  const patched = await api('PATCH', `/v1/applications/${app.id}`, adminKey, { login_url: `${keyway}/dev/login` });
  assert.equal(patched.status, 200, JSON.stringify(patched.body));
  const reg = await fetch(`${keyway}/oauth2/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ client_name: 'Claude (test)', redirect_uris: [`${hostOrigin}/cb`] }) });
  assert.equal(reg.status, 201);
  const client = await reg.json();
  const verifier = 'v'.repeat(20) + 'erifier-for-the-browser-test-0123456789';
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  const page = await browser.newPage();
  const authorize = new URL(`${keyway}/oauth2/authorize`);
  for (const [k, v] of Object.entries({ response_type: 'code', client_id: client.client_id, redirect_uri: `${hostOrigin}/cb`, state: 'xyz', code_challenge: challenge, code_challenge_method: 'S256', resource: `${keyway}/mcp/${app.id}` })) authorize.searchParams.set(k, v);
  await page.goto(authorize.toString());
  await page.getByText('Not for production').waitFor();
  await page.getByLabel('User id').fill('grace');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: /Let Claude \(test\) use your accounts/ }).waitFor();
  assert.match(await page.textContent('main'), /grace[\s\S]*sandbox/);
  await page.screenshot({ path: join(shots, 'agent-approval.png'), fullPage: true });
  // The approval page cannot be framed.
  framingHtml = `<!doctype html><iframe id="f" src="${page.url()}"></iframe>`;
  const framer = await browser.newPage();
  await framer.goto(`${hostOrigin}/framing`);
  await framer.waitForTimeout(500);
  const child = framer.frames().find((f) => f !== framer.mainFrame());
  const inner = await child.evaluate(() => (document.body ? document.body.innerText : '')).catch(() => '');
  assert.doesNotMatch(inner, /use your accounts/);
  await framer.close();
  // Approve read access for an hour: the client gets a code with state and iss.
  await page.getByLabel('For how long').selectOption({ label: '1 hour' });
  await Promise.all([page.waitForURL(/\/cb\?/), page.getByRole('button', { name: 'Approve' }).click()]);
  const back = new URL(page.url());
  assert.equal(back.searchParams.get('state'), 'xyz');
  assert.equal(back.searchParams.get('iss'), keyway);
  const tok = await fetch(`${keyway}/oauth2/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ grant_type: 'authorization_code', code: back.searchParams.get('code'), code_verifier: verifier, client_id: client.client_id, redirect_uri: `${hostOrigin}/cb` }) });
  const t = await tok.json();
  assert.equal(tok.status, 200, JSON.stringify(t));
  assert.equal(t.scope, 'sandbox:read');
  // The agent uses a tool (for the console's timeline below).
  const rpc = (body, extra = {}) => fetch(`${keyway}/mcp/${app.id}`, { method: 'POST', headers: { authorization: `Bearer ${t.access_token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-06-18', ...extra }, body: JSON.stringify(body) });
  const init = await rpc({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'browser-test', version: '1' } } });
  assert.equal(init.status, 200);
  const sid = init.headers.get('mcp-session-id');
  const extra = sid ? { 'mcp-session-id': sid } : {};
  await rpc({ jsonrpc: '2.0', method: 'notifications/initialized' }, extra);
  const called = await rpc({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'sandbox__get_profile', arguments: {} } }, extra);
  assert.equal(called.status, 200);
  assert.match(await called.text(), /Ada|grace|sandbox/i);
  const sessions = await api('GET', '/v1/agent-sessions?user_id=grace&state=active', app.key);
  assert.equal(sessions.body.length, 1);
  assert.equal(sessions.body[0].client_name, 'Claude (test)');
  await page.close();
});

test('the hosted widget cannot be framed, even by an allowed origin', async () => {
  const url = await connectUrl('mallory');
  framingHtml = `<!doctype html><iframe id="f" src="${url}"></iframe>`;
  const page = await browser.newPage();
  await page.goto(`${hostOrigin}/framing`);
  await page.waitForTimeout(500);
  const child = page.frames().find((f) => f !== page.mainFrame());
  assert.ok(child, 'the iframe exists');
  const body = await child.evaluate(() => document.body ? document.body.innerText : '').catch(() => '');
  assert.doesNotMatch(body, /Connect your accounts/, 'the widget did not render in the frame');
  await page.close();
});

test('disconnect from the widget, then reconnect after the provider forgot the grant', async () => {
  // Restarting the dev server empties the sandbox's memory: the stored grant is dead.
  await Promise.all(procs.children.map((c) => new Promise((r) => { if (c.exitCode !== null) r(); else { c.on('exit', r); c.kill('SIGTERM'); } })));
  procs.children = [];
  procs.logs = '';
  await startKeyway();
  const proxied = await fetch(`${keyway}/v1/proxy/sandbox/me`, { headers: { authorization: `Bearer ${app.key}`, 'keyway-user-id': 'ada' } });
  assert.equal(proxied.status, 409, 'the dead grant is found when the API refuses the token');

  const url = await connectUrl('ada');
  currentHostHtml = hostPage(url);
  const page = await browser.newPage();
  await page.goto(hostOrigin);
  const [popup] = await Promise.all([page.waitForEvent('popup'), page.click('#popup')]);
  await popup.waitForLoadState();
  await popup.getByText('Needs to be reconnected').waitFor();
  await popup.screenshot({ path: join(shots, 'widget-needs-reconnect.png') });
  await popup.getByRole('button', { name: 'Reconnect Keyway Sandbox' }).click();
  await approveInSandbox(popup, 'Ada Lovelace');
  const [r] = await results(page, 1);
  assert.equal(r.type, 'keyway:connected');
  const t = await api('POST', '/v1/token', app.key, { integration: 'sandbox', user_id: 'ada' });
  assert.equal(t.status, 200, JSON.stringify(t.body));
  if (!popup.isClosed()) await popup.waitForEvent('close', { timeout: 5000 });

  // Disconnect: the list says so and the host page hears it.
  const url2 = await connectUrl('ada');
  currentHostHtml = hostPage(url2);
  await page.goto(hostOrigin);
  const [popup2] = await Promise.all([page.waitForEvent('popup'), page.click('#popup')]);
  await popup2.waitForLoadState();
  const seen = [];
  popup2.on('response', (r) => seen.push(`${r.status()} ${r.request().method()} ${r.url()}`));
  popup2.on('console', (m) => seen.push('console ' + m.text()));
  await popup2.getByRole('button', { name: /^Disconnect Keyway Sandbox/ }).click();
  await popup2.getByText('Disconnected.').waitFor({ timeout: 5000 }).catch(async (e) => { throw new Error(e.message + '\n' + seen.join('\n')); });
  await popup2.screenshot({ path: join(shots, 'widget-disconnected.png') });
  const [d] = await results(page, 1);
  assert.equal(d.type, 'keyway:disconnected');
  assert.equal(d.connection_id, r.connection_id);
  const gone = await api('POST', '/v1/token', app.key, { integration: 'sandbox', user_id: 'ada' });
  assert.equal(gone.status, 404);
  await page.close();
});

test('keyboard only: the widget can be used with Tab and Enter', async () => {
  const url = await connectUrl('kbd');
  const page = await browser.newPage();
  await page.goto(url);
  await page.keyboard.press('Tab');
  const focused = await page.evaluate(() => document.activeElement && document.activeElement.getAttribute('aria-label'));
  assert.equal(focused, 'Connect Keyway Sandbox');
  await Promise.all([page.waitForURL(/\/sandbox\/oauth\/authorize/), page.keyboard.press('Enter')]);
  await page.close();
});

test('the admin console: sign in, filter the inventory, revoke, find it in the audit log', async () => {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(`${keyway}/admin`);
  await page.waitForURL(/\/admin\/login$/);
  await page.getByLabel('Admin key').fill(app.key);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('That is not an admin key').waitFor();
  await page.getByLabel('Admin key').fill(adminKey);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
  assert.ok(await page.locator('svg.chart').count() >= 3, 'charts on the overview');
  await page.screenshot({ path: join(shots, 'console-overview.png'), fullPage: true });

  await page.getByRole('link', { name: 'Connections' }).first().click();
  // (grace's grant may already be found dead since the restart above: any live status.)
  await page.getByLabel('Integration').selectOption('sandbox');
  await page.getByLabel('Stale').selectOption('no');
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.waitForURL(/integration=sandbox/);
  const row = page.locator('tr', { hasText: 'grace' });
  await row.waitFor();
  await page.screenshot({ path: join(shots, 'console-connections.png'), fullPage: true });
  const csv = await page.request.get(new URL(await page.getByRole('link', { name: 'Export CSV' }).getAttribute('href'), page.url()).toString());
  assert.match(await csv.text(), /^connection_id,/);

  await row.getByRole('link').first().click();
  await page.getByRole('heading', { name: /sandbox for grace/ }).waitFor();
  await page.getByRole('button', { name: 'Revoke this connection' }).click();
  await page.locator('.status-revoked').first().waitFor();
  await page.screenshot({ path: join(shots, 'console-connection.png'), fullPage: true });

  // The agent session from the approval test, with its timeline; end it.
  await page.getByRole('link', { name: 'Agent sessions' }).click();
  await page.getByText('sandbox__get_profile').first().waitFor();
  await page.screenshot({ path: join(shots, 'console-sessions.png'), fullPage: true });
  await page.getByRole('button', { name: /^End session/ }).first().click();
  await page.locator('text=revoked').first().waitFor();

  await page.getByRole('link', { name: 'Audit log' }).click();
  await page.getByRole('button', { name: 'Verify the whole chain' }).click();
  await page.getByText('Chain intact').waitFor();
  const revoked = page.locator('tr', { hasText: 'connection.revoked' }).first();
  await revoked.waitFor();
  assert.match(await revoked.textContent(), /key:/);
  await page.screenshot({ path: join(shots, 'console-audit.png') });
  const gone = await api('POST', '/v1/token', app.key, { integration: 'sandbox', user_id: 'grace' });
  assert.equal(gone.status, 404);
  await page.close();
});
