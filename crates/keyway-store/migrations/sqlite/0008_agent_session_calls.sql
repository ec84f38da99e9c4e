-- The timeline of an agent session: every tool call, kept next to the audit chain's
-- `tool.called` events so a session's history is one indexed read.

CREATE TABLE agent_session_calls (
    session_id   TEXT NOT NULL,
    at           INTEGER NOT NULL,
    tool         TEXT NOT NULL,
    integration  TEXT NOT NULL,
    method       TEXT NOT NULL,
    path         TEXT NOT NULL,
    status       INTEGER,
    outcome      TEXT NOT NULL
);
CREATE INDEX agent_session_calls_session ON agent_session_calls (session_id, at);
