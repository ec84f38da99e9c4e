// An independent OAuth 2.0 / OpenID Connect server for Keyway's end-to-end suite:
// oidc-provider with PKCE required, rotating refresh tokens, RFC 7009 revocation and
// RFC 7662 introspection (used by the test to see what the provider thinks).
import Provider from 'oidc-provider';

const port = Number(process.env.OP_PORT);
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'keyway-e2e',
    client_secret: process.env.OP_CLIENT_SECRET,
    redirect_uris: [process.env.OP_REDIRECT_URI],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  pkce: { required: () => true },
  rotateRefreshToken: true,
  features: {
    devInteractions: { enabled: true },
    revocation: { enabled: true },
    introspection: { enabled: true },
  },
  // Shorter than Keyway's 60 s refresh-ahead window: every token call refreshes, so the
  // suite sees rotation without waiting.
  ttl: { AccessToken: 2, AuthorizationCode: 60, IdToken: 300, RefreshToken: 86400, Grant: 86400, Session: 86400, Interaction: 600 },
  scopes: ['openid', 'offline_access', 'profile', 'email'],
  claims: { openid: ['sub'], profile: ['name'], email: ['email'] },
  findAccount: async (_ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: id, name: `User ${id}`, email: `${id}@example.test` }),
  }),
  cookies: { keys: ['keyway-e2e-cookie-key'] },
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider ready at ${issuer}`);
});
