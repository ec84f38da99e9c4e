-- Keyway schema, SQLite dialect. Timestamps are Unix milliseconds; lists and maps are JSON
-- text; token material is sealed by the vault before it reaches this database.

CREATE TABLE applications (
    id                          TEXT PRIMARY KEY,
    name                        TEXT NOT NULL,
    return_urls                 TEXT NOT NULL,
    allowed_origins             TEXT NOT NULL,
    allowed_integrations        TEXT,
    agent_session_max_secs      INTEGER NOT NULL,
    agent_session_default_secs  INTEGER NOT NULL,
    login_url                   TEXT,
    created_at                  INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id              TEXT PRIMARY KEY,
    application_id  TEXT REFERENCES applications(id),
    name            TEXT NOT NULL,
    hash            TEXT NOT NULL UNIQUE,
    prefix          TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    revoked_at      INTEGER
);

CREATE TABLE integrations (
    slug            TEXT PRIMARY KEY,
    provider        TEXT NOT NULL,
    client_id       TEXT NOT NULL,
    client_secret   TEXT,
    scopes          TEXT NOT NULL,
    settings        TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

CREATE TABLE connect_sessions (
    id              TEXT PRIMARY KEY,
    token_hash      TEXT NOT NULL UNIQUE,
    application_id  TEXT NOT NULL REFERENCES applications(id),
    user_id         TEXT NOT NULL,
    organization_id TEXT,
    integrations    TEXT,
    return_url      TEXT,
    owner           TEXT,
    purpose         TEXT,
    expires_at      INTEGER NOT NULL,
    created_at      INTEGER NOT NULL
);

CREATE TABLE authorize_links (
    id                  TEXT PRIMARY KEY,
    application_id      TEXT NOT NULL REFERENCES applications(id),
    user_id             TEXT NOT NULL,
    organization_id     TEXT,
    integration         TEXT NOT NULL,
    connect_session_id  TEXT,
    return_url          TEXT,
    owner               TEXT,
    purpose             TEXT,
    expires_at          INTEGER NOT NULL
);

CREATE TABLE pending_authorizations (
    state_hash          TEXT PRIMARY KEY,
    application_id      TEXT NOT NULL,
    user_id             TEXT NOT NULL,
    organization_id     TEXT,
    integration         TEXT NOT NULL,
    connect_session_id  TEXT,
    browser_hash        TEXT NOT NULL,
    pkce_verifier       TEXT,
    redirect_uri        TEXT NOT NULL,
    return_url          TEXT,
    owner               TEXT,
    purpose             TEXT,
    expires_at          INTEGER NOT NULL
);

CREATE TABLE connections (
    id                  TEXT PRIMARY KEY,
    application_id      TEXT NOT NULL REFERENCES applications(id),
    user_id             TEXT NOT NULL,
    organization_id     TEXT,
    -- organization_id or '' so the uniqueness rule treats "no organization" as a value.
    org_key             TEXT NOT NULL,
    integration         TEXT NOT NULL,
    provider            TEXT NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('active', 'needs_reauthorization', 'revoked')),
    scopes              TEXT NOT NULL,
    account_id          TEXT,
    account_name        TEXT,
    metadata            TEXT NOT NULL,
    owner               TEXT,
    purpose             TEXT,
    label               TEXT,
    access_token        TEXT,
    refresh_token       TEXT,
    token_type          TEXT,
    expires_at          INTEGER,
    token_version       INTEGER NOT NULL,
    lease_holder        TEXT,
    lease_until         INTEGER,
    lease_fence         INTEGER NOT NULL DEFAULT 0,
    revocation          TEXT,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    last_used_at        INTEGER,
    last_refreshed_at   INTEGER,
    last_validated_at   INTEGER,
    revoked_at          INTEGER
);

-- One live connection per (application, user, organization, integration); revoked ones
-- stay as tombstones beside a newer connection.
CREATE UNIQUE INDEX connections_live_key
    ON connections (application_id, user_id, org_key, integration)
    WHERE status <> 'revoked';
CREATE INDEX connections_user ON connections (user_id);
CREATE INDEX connections_app ON connections (application_id, id);
