-- Organization-shared connections: connected once by an organization admin, used by every
-- member of that organization in the application.

ALTER TABLE connections ADD COLUMN shared INTEGER NOT NULL DEFAULT 0;
ALTER TABLE connect_sessions ADD COLUMN shared INTEGER NOT NULL DEFAULT 0;
ALTER TABLE pending_authorizations ADD COLUMN shared INTEGER NOT NULL DEFAULT 0;
DROP INDEX connections_live_key;
CREATE UNIQUE INDEX connections_live_key
    ON connections (application_id, user_id, org_key, integration, account_key, shared)
    WHERE status <> 'revoked';
CREATE INDEX connections_shared ON connections (application_id, org_key, integration) WHERE shared = 1;
