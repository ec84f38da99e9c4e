// Keyway against oidc-provider: connect (PKCE, browser-bound state, iss check) → token →
// refresh with rotation → revoke, confirmed by the provider's introspection.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, Processes, Browser } from '../lib/harness.mjs';
import { randomBytes } from 'node:crypto';

const here = dirname(fileURLToPath(import.meta.url));
const keywayBin = resolve(process.env.KEYWAY_BIN || join(here, '../../target/debug/keyway'));
const clientSecret = `op-secret-${randomBytes(8).toString('hex')}`;
const adminKey = `e2e-admin-${randomBytes(24).toString('hex')}`;
const procs = new Processes();
let dir, kwUrl, opUrl;

async function api(method, path, key, body) {
  const r = await fetch(`${kwUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

async function introspect(token) {
  const r = await fetch(`${opUrl}/token/introspection`, {
    method: 'POST',
    headers: { authorization: `Basic ${Buffer.from(`keyway-e2e:${clientSecret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token }).toString(),
  });
  return r.json();
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function abs(base, loc) { return new URL(loc, base).toString(); }

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'keyway-e2e-'));
  const [kwPort, opPort] = [await freePort(), await freePort()];
  kwUrl = `http://127.0.0.1:${kwPort}`;
  opUrl = `http://127.0.0.1:${opPort}`;
  await procs.start(process.execPath, [join(here, 'provider.mjs')], {
    OP_PORT: String(opPort), OP_CLIENT_SECRET: clientSecret, OP_REDIRECT_URI: `${kwUrl}/oauth/callback`,
  }, 'oidc-provider ready');
  // The independent server is declared as a custom provider, with the fixed field names.
  writeFileSync(join(dir, 'keyway.toml'), `
listen = "127.0.0.1:${kwPort}"
data_dir = "${join(dir, 'data')}"

[providers.oidc]
name = "oidc-provider (e2e)"
api_base_url = "${opUrl}"

[providers.oidc.oauth2]
authorize_url = "${opUrl}/auth"
token_url = "${opUrl}/token"
revocation_url = "${opUrl}/token/revocation"
scope_separator = " "
pkce = true
client_auth = "basic"
issuer = "${opUrl}"
iss_required = true
refresh_token_rotation = "rotating"

[providers.oidc.oauth2.authorize_params]
prompt = "consent"

[providers.oidc.identity]
url = "${opUrl}/me"
account_id = "sub"
account_name = "name"
`);
  const masterKey = randomBytes(32).toString('base64');
  await procs.start(keywayBin, ['serve', '--config', join(dir, 'keyway.toml')], {
    KEYWAY_MASTER_KEY: masterKey, KEYWAY_ADMIN_KEY: adminKey, KEYWAY_LOG: 'info',
  }, 'keyway is listening');
});

after(() => {
  procs.stopAll();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Drives the widget, then the provider's own login and consent pages, as `user`. */
async function connectUser(sessionUrl, user) {
  const b = new Browser();
  let page = await b.fetch(sessionUrl);
  const html = await page.text();
  assert.match(html, /E2E app/);
  assert.match(html, new RegExp(user));
  const csrf = html.match(/name="csrf" value="([^"]+)"/)[1];
  let res = await b.form(sessionUrl, { csrf, integration: 'oidc' });
  assert.equal(res.status, 303);
  let loc = res.headers.get('location');
  const authz = new URL(loc);
  assert.equal(authz.origin, opUrl);
  assert.equal(authz.searchParams.get('code_challenge_method'), 'S256');
  for (let i = 0; i < 12 && !loc.startsWith(kwUrl); i++) {
    res = await b.fetch(abs(opUrl, loc));
    if (res.status === 200) {
      const body = await res.text();
      const action = abs(opUrl, body.match(/action="([^"]+)"/)[1]);
      const fields = body.includes('name="login"')
        ? { prompt: 'login', login: user, password: 'any' }
        : { prompt: 'consent' };
      res = await b.form(action, fields);
    }
    assert.ok([302, 303].includes(res.status), `unexpected ${res.status} at ${loc}`);
    loc = res.headers.get('location');
  }
  const cb = new URL(loc);
  assert.equal(cb.pathname, '/oauth/callback');
  assert.equal(cb.searchParams.get('iss'), opUrl, 'RFC 9207 iss from the provider');
  res = await b.fetch(loc);
  assert.equal(res.status, 303, await res.text());
  const back = new URL(res.headers.get('location'));
  assert.equal(back.origin, 'https://app.example');
  assert.equal(back.searchParams.get('status'), 'active');
  return back.searchParams.get('connection_id');
}

test('connect, token, refresh with rotation, revoke against oidc-provider', async () => {
  let r = await api('POST', '/v1/integrations', adminKey, {
    slug: 'oidc', provider: 'oidc', client_id: 'keyway-e2e', client_secret: clientSecret,
    scopes: ['openid', 'offline_access', 'profile'],
  });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  r = await api('POST', '/v1/applications', adminKey, { name: 'E2E app', return_urls: ['https://app.example/done'] });
  assert.equal(r.status, 201);
  const appId = r.body.id;
  r = await api('POST', `/v1/applications/${appId}/api-keys`, adminKey, { name: 'e2e' });
  const appKey = r.body.key;
  r = await api('POST', '/v1/connect/sessions', appKey, { user_id: 'alice', return_url: 'https://app.example/done', owner: 'e2e' });
  assert.equal(r.status, 201);

  const connectionId = await connectUser(r.body.url, 'alice');

  r = await api('GET', `/v1/connections/${connectionId}`, appKey);
  assert.equal(r.body.provider_account.id, 'alice');
  assert.equal(r.body.provider_account.name, 'User alice');
  assert.deepEqual(r.body.scopes.sort(), ['offline_access', 'openid', 'profile']);

  // Access tokens live 2 s here. A fresh one is served from cache; once it is past
  // refresh-ahead, the next call refreshes (rotating the refresh token) and the new
  // access token is live upstream.
  const t1 = await api('POST', '/v1/token', appKey, { integration: 'oidc', user_id: 'alice' });
  assert.equal(t1.status, 200, JSON.stringify(t1.body));
  assert.equal((await introspect(t1.body.access_token)).active, true);
  await sleep(2500);
  const t2 = await api('POST', '/v1/token', appKey, { integration: 'oidc', user_id: 'alice' });
  assert.equal(t2.status, 200, JSON.stringify(t2.body));
  assert.notEqual(t2.body.access_token, t1.body.access_token);
  assert.equal((await introspect(t2.body.access_token)).active, true);
  r = await api('GET', `/v1/connections/${connectionId}`, appKey);
  assert.ok(r.body.last_refreshed_at, 'refreshed');

  // Concurrent callers on an expired token: one refresh serves all (a second refresh with
  // a rotated-away token would make the provider revoke the whole grant).
  await sleep(2500);
  const many = await Promise.all(Array.from({ length: 20 }, () => api('POST', '/v1/token', appKey, { integration: 'oidc', user_id: 'alice' })));
  for (const m of many) assert.equal(m.status, 200, JSON.stringify(m.body));
  const distinct = new Set(many.map((m) => m.body.access_token));
  assert.equal(distinct.size, 1, 'one refresh, every caller got its token');
  assert.notEqual([...distinct][0], t2.body.access_token);
  const last = many[many.length - 1].body.access_token;
  assert.equal((await introspect(last)).active, true, 'the grant survived: no refresh-token reuse');

  // Disconnect: RFC 7009 revocation of the refresh token ends the grant at the provider.
  r = await api('DELETE', `/v1/connections/${connectionId}`, appKey);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.revocation, 'confirmed');
  assert.equal((await introspect(last)).active, false, 'the provider confirms the grant is gone');
  r = await api('POST', '/v1/token', appKey, { integration: 'oidc', user_id: 'alice' });
  assert.equal(r.status, 404);
  assert.equal(r.body.code, 'not_installed');
  assert.ok(!procs.logs.includes(clientSecret) && !procs.logs.includes(t2.body.access_token), 'no secret in Keyway\'s logs');

  // Offboarding a second user: the provider confirms the grant is gone too.
  r = await api('POST', '/v1/connect/sessions', appKey, { user_id: 'bob', return_url: 'https://app.example/done' });
  await connectUser(r.body.url, 'bob');
  const bobToken = await api('POST', '/v1/token', appKey, { integration: 'oidc', user_id: 'bob' });
  assert.equal(bobToken.status, 200);
  assert.equal((await introspect(bobToken.body.access_token)).active, true);
  r = await api('POST', '/v1/users/bob/offboard', adminKey);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.connections.length, 1);
  assert.equal(r.body.connections[0].revocation, 'confirmed');
  assert.equal((await introspect(bobToken.body.access_token)).active, false, 'the provider confirms the offboarding');

  // Every step above is in the audit chain, and the chain verifies.
  r = await api('POST', '/v1/audit/verify', adminKey);
  assert.equal(r.body.valid, true);
  assert.ok(r.body.checked > 10);
});
