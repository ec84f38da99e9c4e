// Keyway's /mcp and its authorization server against the official MCP TypeScript SDK:
// the SDK discovers the protected-resource and authorization-server metadata, registers a
// client, builds the PKCE authorization URL and exchanges the code; a person (played by
// a cookie-keeping HTTP client) signs in through `--dev`'s login and approves; then the
// SDK's Streamable HTTP client lists and calls the sandbox tools.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  discoverOAuthProtectedResourceMetadata,
  discoverAuthorizationServerMetadata,
  registerClient,
  startAuthorization,
  exchangeAuthorization,
  refreshAuthorization,
} from '@modelcontextprotocol/sdk/client/auth.js';
import { freePort, Processes, Browser } from '../lib/harness.mjs';
import { connectSandbox, approve } from './person.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const bin = resolve(process.env.KEYWAY_BIN || join(here, '../../target/debug/keyway'));
const procs = new Processes();
let dir, url;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'keyway-mcp-'));
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('KEYWAY_')));
  await procs.start(bin, ['serve', '--dev', '--listen', `127.0.0.1:${port}`, '--data-dir', join(dir, 'data')], env, 'keyway token --integration sandbox');
});

after(() => {
  procs.stopAll();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('the official SDK authorizes against Keyway and uses the approved tools over /mcp', async () => {
  const b = new Browser();
  await connectSandbox(b, url, procs.logs);
  const mcpUrl = new URL(`${url}/mcp`);

  // Unauthenticated: 401 pointing at the protected-resource metadata (RFC 9728).
  const bare = await fetch(mcpUrl, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: '{"jsonrpc":"2.0","id":1,"method":"tools/list"}' });
  assert.equal(bare.status, 401);
  assert.match(bare.headers.get('www-authenticate'), /resource_metadata="[^"]+\/\.well-known\/oauth-protected-resource\/mcp"/);

  const prm = await discoverOAuthProtectedResourceMetadata(mcpUrl);
  assert.equal(prm.resource, `${url}/mcp`);
  const asUrl = prm.authorization_servers[0];
  const metadata = await discoverAuthorizationServerMetadata(asUrl);
  assert.deepEqual(metadata.code_challenge_methods_supported, ['S256']);
  const redirectUrl = 'http://127.0.0.1:53682/callback';
  const clientInformation = await registerClient(asUrl, {
    metadata,
    clientMetadata: { client_name: 'SDK test agent', redirect_uris: [redirectUrl], token_endpoint_auth_method: 'none', grant_types: ['authorization_code'], response_types: ['code'] },
  });
  const { authorizationUrl, codeVerifier } = await startAuthorization(asUrl, { metadata, clientInformation, redirectUrl, state: 'sdk-state', resource: new URL(prm.resource) });

  // The person: Keyway → dev login → approval page → back to the client with a code.
  const back = await approve(b, url, authorizationUrl.toString(), 'SDK test agent');
  assert.equal(back.searchParams.get('state'), 'sdk-state');
  assert.equal(back.searchParams.get('iss'), url);

  const tokens = await exchangeAuthorization(asUrl, { metadata, clientInformation, authorizationCode: back.searchParams.get('code'), codeVerifier, redirectUri: redirectUrl, resource: new URL(prm.resource) });
  assert.match(tokens.access_token, /^kwat_/);
  assert.equal(tokens.scope, 'sandbox:read');

  const transport = new StreamableHTTPClientTransport(mcpUrl, { requestInit: { headers: { Authorization: `Bearer ${tokens.access_token}` } } });
  const client = new Client({ name: 'keyway-e2e', version: '1.0.0' });
  await client.connect(transport);
  assert.equal(client.getServerVersion().name, 'keyway');
  const { tools } = await client.listTools();
  assert.deepEqual(tools.map((t) => t.name).sort(), ['sandbox__call_api', 'sandbox__get_profile', 'sandbox__list_notes']);
  const res = await client.callTool({ name: 'sandbox__get_profile', arguments: {} });
  assert.equal(res.isError, false, JSON.stringify(res));
  const out = JSON.parse(res.content[0].text);
  assert.equal(out.status, 200);
  assert.equal(out.body.name, 'Ada');
  // Bad input is a tool error in words, not a crash.
  const bad = await client.callTool({ name: 'sandbox__get_profile', arguments: { nope: 1 } });
  assert.equal(bad.isError, true);
  assert.match(bad.content[0].text, /no field `nope`/);
  // A write through call_api with a read session: refused with the scope to ask for.
  await assert.rejects(() => client.callTool({ name: 'sandbox__call_api', arguments: { method: 'POST', path: 'notes' } }), /403|insufficient_scope|Forbidden/i);

  // The session ends (the application or an operator revokes it): the next call is 401.
  const appKey = procs.logs.match(/application key:\s+(\S+)/)[1];
  const list = await (await fetch(`${url}/v1/agent-sessions?user_id=demo&state=active`, { headers: { authorization: `Bearer ${appKey}` } })).json();
  assert.equal(list.length, 1);
  const del = await fetch(`${url}/v1/agent-sessions/${list[0].id}`, { method: 'DELETE', headers: { authorization: `Bearer ${appKey}` } });
  assert.equal(del.status, 200);
  await assert.rejects(() => client.callTool({ name: 'sandbox__get_profile', arguments: {} }), /401|Unauthorized|invalid_token/i);
  // No refresh can outlive the session: Keyway issues no refresh tokens and refuses the grant.
  assert.equal(tokens.refresh_token, undefined);
  await assert.rejects(
    () => refreshAuthorization(asUrl, { metadata, clientInformation, refreshToken: 'made-up', resource: new URL(prm.resource) }),
    /unsupported_grant_type|grant/i,
  );
  await client.close().catch(() => {});
});
