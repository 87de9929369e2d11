-- Accounts and people (profiles), the audit log, and erasure records.
-- Portable SQLite + Postgres: BIGINT epoch-ms timestamps, TEXT JSON,
-- booleans as BIGINT 0/1.

-- A tenant's customer account. `account_id` is the id events use.
CREATE TABLE accounts (
    tenant_id       TEXT NOT NULL,
    account_id      TEXT NOT NULL,
    display_name    TEXT,
    language        TEXT,                       -- es | en | NULL (inherit)
    time_zone       TEXT,                       -- IANA zone | NULL (inherit)
    plan            TEXT,
    renewal_date    TEXT,                       -- YYYY-MM-DD
    owner           TEXT,                       -- the success manager on the tenant's side
    attributes      TEXT NOT NULL DEFAULT '{}', -- JSON object
    reports_enabled BIGINT NOT NULL DEFAULT 1,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, account_id)
);
CREATE INDEX accounts_plan ON accounts (tenant_id, plan, account_id);

-- A person of an account. `person_id` is the `user_id` events carry.
CREATE TABLE people (
    tenant_id   TEXT NOT NULL,
    account_id  TEXT NOT NULL,
    person_id   TEXT NOT NULL,
    name        TEXT,
    email       TEXT,
    phone       TEXT,
    role        TEXT NOT NULL,                  -- executive | admin | member
    language    TEXT,
    time_zone   TEXT,
    channels    TEXT NOT NULL DEFAULT '[]',     -- JSON: preferred channels, most preferred first
    consent     TEXT NOT NULL DEFAULT '{}',     -- JSON: {channel: {granted, given_at}}
    attributes  TEXT NOT NULL DEFAULT '{}',
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, account_id, person_id)
);
CREATE INDEX people_role ON people (tenant_id, account_id, role, person_id);

-- Tombstones: subjects whose personal data was erased. `person_id` is ''
-- for a whole account. Result-writing paths (sentiment alerts, the profile
-- job) check it inside their transactions so a job that was already running
-- when the erasure happened cannot write the data back.
CREATE TABLE erased_subjects (
    tenant_id  TEXT NOT NULL,
    account_id TEXT NOT NULL,
    person_id  TEXT NOT NULL,
    erased_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, account_id, person_id)
);

-- The record that an erasure happened: who, when, what (rows changed per table).
CREATE TABLE erasures (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    account_id TEXT NOT NULL,
    person_id  TEXT NOT NULL,                   -- '' = the whole account
    actor      TEXT NOT NULL,
    erased_at  BIGINT NOT NULL,
    counts     TEXT NOT NULL                    -- JSON {table: rows}
);
CREATE INDEX erasures_subject ON erasures (tenant_id, account_id, person_id, erased_at);

-- Append-only log of admin-side changes.
CREATE TABLE audit_log (
    id        TEXT PRIMARY KEY,                 -- UUIDv7: time-ordered
    tenant_id TEXT,                             -- NULL for global changes
    actor     TEXT NOT NULL,                    -- cli:<user> | tenant:<name> | admin-api
    action    TEXT NOT NULL,                    -- tenant.created, key.rotated, model.activated, job.retried, profile.erased
    target    TEXT NOT NULL,
    details   TEXT NOT NULL DEFAULT '{}',       -- JSON
    at        BIGINT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, at);
