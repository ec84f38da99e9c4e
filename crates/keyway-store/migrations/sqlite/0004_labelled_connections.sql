-- Several connections per user and integration, one per provider account (two Slack
-- workspaces); reconnecting the same account still updates its connection.

ALTER TABLE connections ADD COLUMN account_key TEXT NOT NULL DEFAULT '';
UPDATE connections SET account_key = COALESCE(account_id, '');
DROP INDEX connections_live_key;
CREATE UNIQUE INDEX connections_live_key
    ON connections (application_id, user_id, org_key, integration, account_key)
    WHERE status <> 'revoked';
