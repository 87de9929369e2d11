-- Churn scoring: a model registry, the scores (with history) and generic alerts.
-- Portable SQLite + Postgres: BIGINT epoch-ms timestamps, TEXT JSON.

-- Every trained model version. `scope` is a tenant id, or '' for a global
-- model usable by every tenant ('' rather than NULL so that the primary key
-- of `active_models` needs no NULL handling on either engine).
CREATE TABLE models (
    version     TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,          -- 'churn'
    scope       TEXT NOT NULL DEFAULT '',
    artifact    TEXT NOT NULL,          -- the ChurnModel JSON (kairos-models format)
    metrics     TEXT NOT NULL,          -- held-out metrics JSON (also inside the artifact)
    schema      TEXT NOT NULL,          -- feature schema JSON (also inside the artifact)
    source      TEXT NOT NULL,          -- how it was trained: 'store ...' or 'csv FILE'
    created_at  BIGINT NOT NULL
);
CREATE INDEX models_kind_scope ON models (kind, scope, created_at);

-- Which version is live per (kind, scope). A tenant-scoped row wins over the
-- global ('') one. Activating = one upsert, so it is atomic.
CREATE TABLE active_models (
    kind         TEXT NOT NULL,
    scope        TEXT NOT NULL,
    version      TEXT NOT NULL REFERENCES models (version),
    activated_at BIGINT NOT NULL,
    PRIMARY KEY (kind, scope)
);

-- One row per scoring of an account; history is kept (latest = max scored_at).
CREATE TABLE churn_scores (
    id            TEXT PRIMARY KEY,     -- deterministic: job id + account, so a re-run overwrites itself
    tenant_id     TEXT NOT NULL,
    account_id    TEXT NOT NULL,
    probability   DOUBLE PRECISION NOT NULL,
    risk_level    TEXT NOT NULL,        -- LOW | MEDIUM | HIGH | CRITICAL
    factors       TEXT NOT NULL,        -- JSON: top factors with descriptions
    actions       TEXT NOT NULL,        -- JSON: recommended actions
    features      TEXT NOT NULL,        -- JSON: the AccountFeatures scored
    model_version TEXT NOT NULL,
    trigger_kind  TEXT NOT NULL,        -- 'event' | 'schedule'
    trigger_ref   TEXT NOT NULL,        -- event id, or 'schedule@tick'
    job_id        TEXT NOT NULL,
    scored_at     BIGINT NOT NULL
);
CREATE INDEX churn_scores_account ON churn_scores (tenant_id, account_id, scored_at);
CREATE INDEX churn_scores_tenant ON churn_scores (tenant_id, scored_at);

-- Alerts for people (churn today, sentiment later). `dedup_key` makes
-- raising an alert idempotent, e.g. 'churn_critical|acct-1|2026-11-21'.
CREATE TABLE alerts (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    account_id  TEXT NOT NULL,
    kind        TEXT NOT NULL,          -- 'churn_critical', ...
    severity    TEXT NOT NULL,          -- 'critical' | 'high' | ...
    reason      TEXT NOT NULL,
    payload     TEXT NOT NULL,          -- JSON
    dedup_key   TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (tenant_id, dedup_key)
);
CREATE INDEX alerts_tenant ON alerts (tenant_id, created_at);
