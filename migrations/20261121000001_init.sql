-- One portable schema for SQLite (embedded) and Postgres (distributed).
-- Timestamps are epoch milliseconds (BIGINT); JSON is TEXT.

CREATE TABLE tenants (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    rate_per_second BIGINT,
    created_at      BIGINT NOT NULL
);

-- Only the SHA-256 of a key is kept; `prefix` helps humans tell keys apart.
CREATE TABLE api_keys (
    key_hash   TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    prefix     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

-- (tenant_id, event_id) is the idempotency key of ingest.
CREATE TABLE events (
    tenant_id   TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    type        TEXT NOT NULL,
    account_id  TEXT NOT NULL,
    user_id     TEXT,
    occurred_at BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    data        TEXT NOT NULL,
    PRIMARY KEY (tenant_id, event_id)
);
CREATE INDEX events_account ON events (tenant_id, account_id, occurred_at);

CREATE TABLE job_runs (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    kind         TEXT NOT NULL,
    event_id     TEXT,
    payload      TEXT NOT NULL,
    state        TEXT NOT NULL,
    attempts     BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    queued_at    BIGINT,
    started_at   BIGINT,
    finished_at  BIGINT,
    worker       TEXT,
    last_error   TEXT,
    result_ref   TEXT
);
CREATE INDEX job_runs_state ON job_runs (state, created_at);
CREATE INDEX job_runs_event ON job_runs (tenant_id, event_id);
CREATE INDEX job_runs_tenant ON job_runs (tenant_id, created_at);

-- Results of the `activity` job: per-account engagement aggregates.
CREATE TABLE account_activity (
    tenant_id       TEXT NOT NULL,
    account_id      TEXT NOT NULL,
    first_seen      BIGINT NOT NULL,
    last_seen       BIGINT NOT NULL,
    last_login_at   BIGINT,
    last_payment_at BIGINT,
    events          BIGINT NOT NULL DEFAULT 0,
    logins          BIGINT NOT NULL DEFAULT 0,
    comments        BIGINT NOT NULL DEFAULT 0,
    tickets         BIGINT NOT NULL DEFAULT 0,
    payments        BIGINT NOT NULL DEFAULT 0,
    failed_payments BIGINT NOT NULL DEFAULT 0,
    amount_paid_cents BIGINT NOT NULL DEFAULT 0,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, account_id)
);

-- The same counters per UTC day, for "logins per day" and 30-day windows.
CREATE TABLE account_activity_daily (
    tenant_id       TEXT NOT NULL,
    account_id      TEXT NOT NULL,
    day             TEXT NOT NULL,
    events          BIGINT NOT NULL DEFAULT 0,
    logins          BIGINT NOT NULL DEFAULT 0,
    comments        BIGINT NOT NULL DEFAULT 0,
    tickets         BIGINT NOT NULL DEFAULT 0,
    payments        BIGINT NOT NULL DEFAULT 0,
    failed_payments BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, account_id, day)
);

-- Which events the activity job has applied: makes it idempotent.
CREATE TABLE activity_applied (
    tenant_id TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, event_id)
);
