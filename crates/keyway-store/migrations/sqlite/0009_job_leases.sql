-- Leases of periodic jobs (keep-alive, revocation retries), so processes sharing the
-- database take turns instead of doing a pass each.

CREATE TABLE job_leases (
    job     TEXT PRIMARY KEY,
    holder  TEXT NOT NULL,
    until   INTEGER NOT NULL
);
