-- Keyway schema, PostgreSQL dialect: the SQLite schema as of its migration 0009, in one
-- step. Timestamps are Unix milliseconds (BIGINT) as in SQLite, so both stores share their
-- row mapping and time arithmetic; lists and maps are JSON text; flags are BOOLEAN; token
-- material is sealed by the vault before it reaches this database.

CREATE TABLE applications (
    id                          TEXT PRIMARY KEY,
    name                        TEXT NOT NULL,
    return_urls                 TEXT NOT NULL,
    allowed_origins             TEXT NOT NULL,
    allowed_integrations        TEXT,
    agent_session_max_secs      BIGINT NOT NULL,
    agent_session_default_secs  BIGINT NOT NULL,
    login_url                   TEXT,
    branding                    TEXT,
    created_at                  BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id              TEXT PRIMARY KEY,
    application_id  TEXT REFERENCES applications(id),
    name            TEXT NOT NULL,
    hash            TEXT NOT NULL UNIQUE,
    prefix          TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    revoked_at      BIGINT
);

CREATE TABLE integrations (
    slug            TEXT PRIMARY KEY,
    provider        TEXT NOT NULL,
    client_id       TEXT NOT NULL,
    client_secret   TEXT,
    scopes          TEXT NOT NULL,
    settings        TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
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
    expires_at      BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    shared          BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX connect_sessions_expiry ON connect_sessions (expires_at);

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
    expires_at          BIGINT NOT NULL
);
CREATE INDEX authorize_links_expiry ON authorize_links (expires_at);

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
    expires_at          BIGINT NOT NULL,
    shared              BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX pending_authorizations_expiry ON pending_authorizations (expires_at);

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
    -- account_id or '': one connection per provider account.
    account_key         TEXT NOT NULL DEFAULT '',
    metadata            TEXT NOT NULL,
    owner               TEXT,
    purpose             TEXT,
    label               TEXT,
    access_token        TEXT,
    refresh_token       TEXT,
    token_type          TEXT,
    expires_at          BIGINT,
    token_version       BIGINT NOT NULL,
    lease_holder        TEXT,
    lease_until         BIGINT,
    lease_fence         BIGINT NOT NULL DEFAULT 0,
    revocation          TEXT,
    shared              BOOLEAN NOT NULL DEFAULT FALSE,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    last_used_at        BIGINT,
    last_refreshed_at   BIGINT,
    last_validated_at   BIGINT,
    revoked_at          BIGINT
);
-- One live connection per (application, user, organization, integration, account,
-- shared); revoked ones stay as tombstones beside a newer connection.
CREATE UNIQUE INDEX connections_live_key
    ON connections (application_id, user_id, org_key, integration, account_key, shared)
    WHERE status <> 'revoked';
CREATE INDEX connections_user ON connections (user_id);
CREATE INDEX connections_app ON connections (application_id, id);
CREATE INDEX connections_shared ON connections (application_id, org_key, integration) WHERE shared;
CREATE INDEX connections_expiring ON connections (expires_at) WHERE status = 'active';

-- Every replica keeps tokens in memory: tell them when a connection's tokens, status or
-- refresh lease change (a refresh, a revocation, a lost grant, a released lease), so
-- caches drop it and waiting replicas re-read at once, and when a connection is added
-- (payload `app:<application id>`: unnamed calls may become ambiguous). Delivered on
-- commit.
CREATE FUNCTION keyway_connection_changed() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM pg_notify('keyway_connection', 'app:' || NEW.application_id);
    ELSE
        PERFORM pg_notify('keyway_connection', NEW.id);
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER connections_changed
    AFTER UPDATE ON connections
    FOR EACH ROW
    WHEN (OLD.token_version IS DISTINCT FROM NEW.token_version
          OR OLD.status IS DISTINCT FROM NEW.status
          OR (OLD.lease_until IS NOT NULL AND NEW.lease_until IS NULL))
    EXECUTE FUNCTION keyway_connection_changed();

CREATE TRIGGER connections_added
    AFTER INSERT ON connections
    FOR EACH ROW
    EXECUTE FUNCTION keyway_connection_changed();

-- The hash-chained audit log. `audit_head` is its one-row head: appending locks it
-- (SELECT ... FOR UPDATE), which orders every append across replicas.
CREATE TABLE audit_events (
    seq             BIGINT PRIMARY KEY,
    at              BIGINT NOT NULL,
    action          TEXT NOT NULL,
    actor           TEXT NOT NULL,
    application_id  TEXT,
    user_id         TEXT,
    connection_id   TEXT,
    integration     TEXT,
    details         TEXT NOT NULL,
    prev_hash       TEXT NOT NULL,
    hash            TEXT NOT NULL
);
CREATE INDEX audit_events_connection ON audit_events (connection_id);

CREATE TABLE audit_head (
    id    SMALLINT PRIMARY KEY CHECK (id = 1),
    seq   BIGINT NOT NULL,
    hash  TEXT NOT NULL
);

CREATE TABLE revocation_retries (
    id              TEXT PRIMARY KEY,
    connection_id   TEXT NOT NULL,
    application_id  TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    integration     TEXT NOT NULL,
    access_token    TEXT NOT NULL,
    refresh_token   TEXT,
    attempts        BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    created_at      BIGINT NOT NULL
);
CREATE INDEX revocation_retries_due ON revocation_retries (next_attempt_at);

CREATE TABLE webhooks (
    id              TEXT PRIMARY KEY,
    application_id  TEXT,
    url             TEXT NOT NULL,
    events          TEXT NOT NULL,
    secret          TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);

CREATE TABLE webhook_deliveries (
    id              TEXT PRIMARY KEY,
    -- Insertion order, so deliveries go out in the order their events happened.
    n               BIGINT GENERATED ALWAYS AS IDENTITY,
    webhook_id      TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event_type      TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    attempts        BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    last_status     BIGINT,
    last_error      TEXT,
    delivered_at    BIGINT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
CREATE INDEX webhook_deliveries_hook ON webhook_deliveries (webhook_id, created_at);

CREATE TABLE agent_clients (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    redirect_uris   TEXT NOT NULL,
    created_at      BIGINT NOT NULL
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
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    done            BOOLEAN NOT NULL DEFAULT FALSE
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
    created_at        BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL,
    revoked_at        BIGINT,
    code_hash         TEXT UNIQUE,
    code_challenge    TEXT NOT NULL,
    code_redirect_uri TEXT NOT NULL,
    code_expires_at   BIGINT NOT NULL,
    code_used         BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX agent_sessions_user ON agent_sessions (application_id, user_id);

CREATE TABLE agent_tokens (
    hash        TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX agent_tokens_session ON agent_tokens (session_id);

CREATE TABLE agent_session_calls (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id   TEXT NOT NULL,
    at           BIGINT NOT NULL,
    tool         TEXT NOT NULL,
    integration  TEXT NOT NULL,
    method       TEXT NOT NULL,
    path         TEXT NOT NULL,
    status       BIGINT,
    outcome      TEXT NOT NULL
);
CREATE INDEX agent_session_calls_session ON agent_session_calls (session_id, at);

-- Leases of periodic jobs (keep-alive, revocation retries): one replica does each pass.
CREATE TABLE job_leases (
    job     TEXT PRIMARY KEY,
    holder  TEXT NOT NULL,
    until   BIGINT NOT NULL
);
