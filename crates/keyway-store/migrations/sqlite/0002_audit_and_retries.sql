-- The hash-chained audit log and the queue of provider revocations to retry.

CREATE TABLE audit_events (
    seq             INTEGER PRIMARY KEY,
    at              INTEGER NOT NULL,
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

CREATE TABLE revocation_retries (
    id              TEXT PRIMARY KEY,
    connection_id   TEXT NOT NULL,
    application_id  TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    integration     TEXT NOT NULL,
    access_token    TEXT NOT NULL,
    refresh_token   TEXT,
    attempts        INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    created_at      INTEGER NOT NULL
);
CREATE INDEX revocation_retries_due ON revocation_retries (next_attempt_at);
