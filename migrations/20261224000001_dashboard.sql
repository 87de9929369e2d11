-- The ops dashboard: its users (argon2id password hashes, a role, an optional
-- tenant scope) and their sessions (only the SHA-256 of the cookie's token is
-- stored, with the session's CSRF token and expiry).
CREATE TABLE dashboard_users (
    name          TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL,
    tenant_id     TEXT,
    created_at    BIGINT NOT NULL
);

CREATE TABLE dashboard_sessions (
    token_hash TEXT PRIMARY KEY,
    user_name  TEXT NOT NULL REFERENCES dashboard_users (name),
    csrf       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX dashboard_sessions_expiry ON dashboard_sessions (expires_at);

-- Keyset pages of the dashboard's job list: newest first over everything,
-- per kind, or per tenant and kind (a tenant alone uses job_runs_tenant, a
-- state job_runs_state); recent outcomes for the overview by finish time.
CREATE INDEX job_runs_created ON job_runs (created_at, id);
CREATE INDEX job_runs_kind ON job_runs (kind, created_at, id);
CREATE INDEX job_runs_tenant_kind ON job_runs (tenant_id, kind, created_at, id);
CREATE INDEX job_runs_finished ON job_runs (finished_at);
