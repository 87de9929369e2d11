-- Operations: the workers alive, the job kinds paused, and the index the
-- queue gauges read. Portable: SQLite and Postgres alike.

-- One row per worker process, written when it starts and every
-- `heartbeat_ms` after. A row whose heartbeat is older than three beats is
-- shown as dead; rows silent for a day are pruned by the live workers.
CREATE TABLE workers (
    id             TEXT PRIMARY KEY,
    host           TEXT NOT NULL,
    pid            BIGINT NOT NULL,
    version        TEXT NOT NULL,
    kinds          TEXT NOT NULL,          -- JSON array of job kinds
    in_flight      BIGINT NOT NULL DEFAULT 0,
    heartbeat_ms   BIGINT NOT NULL,
    started_at     BIGINT NOT NULL,
    last_heartbeat BIGINT NOT NULL,
    stopped_at     BIGINT
);
CREATE INDEX workers_heartbeat ON workers (last_heartbeat);

-- Job kinds no worker fetches while they are listed here (jobs stay
-- queued). Changes are recorded in audit_log in the same transaction.
CREATE TABLE paused_kinds (
    kind      TEXT PRIMARY KEY,
    paused_at BIGINT NOT NULL,
    paused_by TEXT NOT NULL,
    reason    TEXT
);

-- Oldest queued job of a kind in one index probe (the
-- `kairos_queue_oldest_ready_age_seconds` gauge, read on every scrape).
CREATE INDEX job_runs_kind_state ON job_runs (kind, state, queued_at);
