// The README's walkthrough, with the real binary: `keyway serve --dev` on a fresh data
// directory, the printed connect link through the built-in sandbox provider, then the
// CLI (`keyway token`, `keyway connections ...`). Also the start-up refusals an operator
// meets: no master key, an unknown config key, a weak admin key.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, writeFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, Processes, Browser, unescapeHtml } from '../lib/harness.mjs';

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
const bin = resolve(process.env.KEYWAY_BIN || join(here, '../../target/debug/keyway'));
const procs = new Processes();
let dir, url;

function cleanEnv(extra = {}) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('KEYWAY_')));
  return { ...env, ...extra };
}

async function cli(args, env) {
  try {
    const r = await run(bin, args, { env: cleanEnv(env) });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'keyway-cli-'));
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  await procs.start(bin, ['serve', '--dev', '--listen', `127.0.0.1:${port}`, '--data-dir', join(dir, 'data')], cleanEnv(), 'keyway token --integration sandbox');
});

after(() => {
  procs.stopAll();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('serve --dev: the printed link connects the sandbox and `keyway token` prints a token', async () => {
  const banner = procs.logs;
  assert.match(banner, /NOT FOR PRODUCTION/);
  const appKey = banner.match(/application key:\s+(\S+)/)[1];
  const connectUrl = banner.match(/(http:\/\/127\.0\.0\.1:\d+\/connect\/kwcs_\S+)/)[1];
  assert.equal(statSync(join(dir, 'data', 'master.key')).mode & 0o777, 0o600, 'the dev master key is private');
  assert.equal(statSync(join(dir, 'data')).mode & 0o777, 0o700, 'the data directory is private');

  const b = new Browser();
  let r = await b.fetch(connectUrl);
  const html = await r.text();
  assert.match(html, /Demo application/);
  assert.match(html, /demo/);
  const csrf = html.match(/name="csrf" value="([^"]+)"/)[1];
  r = await b.form(connectUrl, { csrf, integration: 'sandbox' });
  assert.equal(r.status, 303);
  r = await b.fetch(r.headers.get('location'));
  const consent = await r.text();
  assert.match(consent, /Not for production/);
  const fields = Object.fromEntries([...consent.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"/g)].map((m) => [m[1], unescapeHtml(m[2])]));
  r = await b.form(`${url}/sandbox/oauth/authorize`, { ...fields, account: 'Ada', decision: 'approve' });
  assert.equal(r.status, 303);
  r = await b.fetch(r.headers.get('location'));
  assert.equal(r.status, 200);
  assert.match(await r.text(), /Connected/);

  const env = { KEYWAY_URL: url, KEYWAY_API_KEY: appKey };
  const tok = await cli(['token', '--integration', 'sandbox', '--user', 'demo'], env);
  assert.equal(tok.code, 0, tok.stderr);
  assert.match(tok.stdout.trim(), /^sbx_at_/);
  const me = await fetch(`${url}/sandbox/api/me`, { headers: { authorization: `Bearer ${tok.stdout.trim()}` } });
  assert.equal((await me.json()).name, 'Ada');

  // The security team's view: inventory (table and CSV) and the audit chain.
  const adminKey = banner.match(/admin key:\s+(\S+)/)[1];
  const admin = { KEYWAY_URL: url, KEYWAY_API_KEY: adminKey };
  const inv = await cli(['inventory'], admin);
  assert.equal(inv.code, 0, inv.stderr);
  assert.match(inv.stdout, /Demo application\s+demo\s+sandbox\s+Ada/);
  const csvOut = await cli(['inventory', '--format', 'csv'], admin);
  assert.match(csvOut.stdout.split('\n')[0], /^connection_id,application_id,application_name,user_id/);
  const ver = await cli(['audit', 'verify'], admin);
  assert.equal(ver.code, 0, ver.stderr);
  assert.match(ver.stdout, /audit chain valid: \d+ records/);
  const lines = (await cli(['audit', 'export'], admin)).stdout.trim().split('\n').map((l) => JSON.parse(l));
  assert.ok(lines.some((e) => e.action === 'token.issued' && e.user_id === 'demo'));
  assert.ok(lines.some((e) => e.action === 'connection.created'));

  const list = await cli(['connections', 'list'], env);
  assert.equal(list.code, 0, list.stderr);
  assert.match(list.stdout, /^ID\s+USER\s+INTEGRATION\s+STATUS/m);
  assert.match(list.stdout, /demo\s+sandbox\s+active\s+Ada/);
  const json = JSON.parse((await cli(['connections', 'list', '--json'], env)).stdout);
  const id = json.data[0].id;
  const del = await cli(['connections', 'delete', id], env);
  assert.equal(del.code, 0, del.stderr);
  assert.match(del.stdout, /revocation at the provider: confirmed/);

  const off = await cli(['users', 'offboard', 'demo'], { KEYWAY_URL: url, KEYWAY_API_KEY: adminKey });
  assert.equal(off.code, 0, off.stderr);
  assert.match(off.stdout, /CONNECTION\s+APPLICATION/, 'nothing left to revoke is an empty report');

  const missing = await cli(['token', '--integration', 'sandbox', '--user', 'demo'], env);
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /not_installed/);
  const noKey = await cli(['connections', 'list'], { KEYWAY_URL: url });
  assert.notEqual(noKey.code, 0);
  assert.match(noKey.stderr, /unauthorized/);
});

test('serve refuses to start without a master key, with an unknown config key, or a weak admin key', async () => {
  let r = await cli(['serve', '--listen', '127.0.0.1:0', '--data-dir', join(dir, 'x')]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /no master key/);
  writeFileSync(join(dir, 'bad.toml'), 'listen = "127.0.0.1:0"\nlisten_adress = "x"\n');
  r = await cli(['serve', '--config', join(dir, 'bad.toml')]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /listen_adress/);
  r = await cli(['serve', '--listen', '127.0.0.1:0'], { KEYWAY_LISTN: 'x' });
  assert.match(r.stderr, /KEYWAY_LISTN/);
  const key = (await cli(['master-key', 'generate'])).stdout.trim();
  assert.equal(Buffer.from(key, 'base64').length, 32);
  r = await cli(['serve', '--listen', '127.0.0.1:0', '--data-dir', join(dir, 'y')], { KEYWAY_MASTER_KEY: key, KEYWAY_ADMIN_KEY: 'short' });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /at least 32 characters/);
  writeFileSync(join(dir, 'badprov.toml'), '[providers.acme]\nname = "Acme"\napi_base_url = "https://api.acme.test"\n[providers.acme.oauth2]\nauthorize_url = "https://acme.test/a"\ntoken_url = "https://acme.test/t"\nclient_auth = "bearer"\n');
  r = await cli(['serve', '--config', join(dir, 'badprov.toml'), '--listen', '127.0.0.1:0', '--data-dir', join(dir, 'z')], { KEYWAY_MASTER_KEY: key });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /config \[providers\.acme\]: oauth2\.client_auth/);
});
