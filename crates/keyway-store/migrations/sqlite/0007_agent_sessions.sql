-- Agents: OAuth clients (dynamic registration), pending authorization requests waiting for
-- the application to identify its user and the person to approve, the approved sessions
-- (with their one authorization code), and opaque access tokens stored as hashes.

CREATE TABLE agent_clients (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    redirect_uris   TEXT NOT NULL,
    created_at      INTEGER NOT NULL
);

CREATE TABLE agent_authorizations (
    id              TEXT PRIMARY KEY,
    client_id       TEXT NOT NULL,
    application_id  TEXT NOT NULL,
    redirect_uri    TEXT NOT NULL,
    state           TEXT,
    code_challenge  TEXT NOT NULL,
    resource        TEXT NOT NULL,
    user_id         TEXT,
    organization_id TEXT,
    approval_hash   TEXT,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    done            INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE agent_sessions (
    id                TEXT PRIMARY KEY,
    application_id    TEXT NOT NULL,
    user_id           TEXT NOT NULL,
    organization_id   TEXT,
    client_id         TEXT NOT NULL,
    client_name       TEXT NOT NULL,
    integrations      TEXT NOT NULL,
    access            TEXT NOT NULL,
    resource          TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    revoked_at        INTEGER,
    code_hash         TEXT UNIQUE,
    code_challenge    TEXT NOT NULL,
    code_redirect_uri TEXT NOT NULL,
    code_expires_at   INTEGER NOT NULL,
    code_used         INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX agent_sessions_user ON agent_sessions (application_id, user_id);

CREATE TABLE agent_tokens (
    hash        TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX agent_tokens_session ON agent_tokens (session_id);
