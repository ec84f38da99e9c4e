// The official MCP Python SDK (`mcp` on PyPI) against Keyway: tests/mcp/python/sdk_flow.py
// runs the whole flow; this file starts `keyway serve --dev`, connects the sandbox for the
// demo user, and runs the script with the Python from MCP_TEST_PYTHON (scripts/test makes a
// virtual environment with the pinned SDK).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, Processes, Browser } from '../lib/harness.mjs';
import { connectSandbox } from './person.mjs';

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
const bin = resolve(process.env.KEYWAY_BIN || join(here, '../../target/debug/keyway'));
const python = process.env.MCP_TEST_PYTHON || resolve(join(here, '../../.tools/pyenv/bin/python'));
const procs = new Processes();
let dir, url;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'keyway-py-'));
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('KEYWAY_')));
  await procs.start(bin, ['serve', '--dev', '--listen', `127.0.0.1:${port}`, '--data-dir', join(dir, 'data')], env, 'keyway token --integration sandbox');
});

after(() => {
  procs.stopAll();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('the official Python SDK: discovery, registration, PKCE, approval, tools, 403, 401, no refresh', async () => {
  await connectSandbox(new Browser(), url, procs.logs);

  const appKey = procs.logs.match(/application key:\s+(\S+)/)[1];
  const out = await run(python, [join(here, 'python', 'sdk_flow.py')], { env: { ...process.env, KEYWAY_URL: url, KEYWAY_APP_KEY: appKey }, timeout: 120000 });
  assert.match(out.stdout, /call: ok/);
  assert.match(out.stdout, /outside the approval: refused/);
  assert.match(out.stdout, /after the end: 401/);
  assert.match(out.stdout, /refresh past the end: refused/);
});
