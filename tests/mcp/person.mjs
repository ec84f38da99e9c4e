// The person in the MCP end-to-end tests (TypeScript SDK, Python SDK, conformance), played by a cookie-keeping HTTP client against
// `keyway serve --dev`: connects the sandbox through the printed connect link, and signs
// in through the dev login and approves an agent's authorization request.
import assert from 'node:assert/strict';
import { unescapeHtml } from '../lib/harness.mjs';

/** Connects the sandbox for `demo` through the connect link in the server's output. */
export async function connectSandbox(b, url, logs) {
  const connectUrl = logs.match(/(http:\/\/127\.0\.0\.1:\d+\/connect\/kwcs_\S+)/)[1];
  let r = await b.fetch(connectUrl);
  const csrf = (await r.text()).match(/name="csrf" value="([^"]+)"/)[1];
  r = await b.form(connectUrl, { csrf, integration: 'sandbox' });
  r = await b.fetch(r.headers.get('location'));
  const consent = await r.text();
  const fields = Object.fromEntries([...consent.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"/g)].map((m) => [m[1], unescapeHtml(m[2])]));
  r = await b.form(`${url}/sandbox/oauth/authorize`, { ...fields, account: 'Ada', decision: 'approve' });
  r = await b.fetch(r.headers.get('location'));
  assert.match(await r.text(), /Connected/);
}

/**
 * Follows an authorization URL: Keyway → dev login as `demo` → approval page (which must
 * name `clientName`) → approve `sandbox` at `access` for an hour. Returns the URL Keyway
 * sends the browser back to (the client's redirect URI with code, state and iss).
 */
export async function approve(b, url, authorizationUrl, clientName, access = 'read') {
  let r = await b.fetch(authorizationUrl);
  assert.equal(r.status, 303);
  const login = new URL(r.headers.get('location'));
  assert.equal(login.pathname, '/dev/login');
  r = await b.form(`${url}/dev/login`, { keyway_request: login.searchParams.get('keyway_request'), user_id: 'demo' });
  assert.equal(r.status, 303);
  const approval = r.headers.get('location');
  r = await b.fetch(approval);
  const page = await r.text();
  assert.match(page, new RegExp(clientName));
  const csrf = page.match(/name="csrf" value="([^"]+)"/)[1];
  r = await b.fetch(approval, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams([['csrf', unescapeHtml(csrf)], ['integrations', 'sandbox'], ['access', access], ['duration', '3600'], ['decision', 'approve']]).toString() });
  assert.equal(r.status, 303);
  return new URL(r.headers.get('location'));
}
