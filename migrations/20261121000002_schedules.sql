-- Scheduler: one row per (schedule, tick) makes each tick fire once across
-- any number of scheduler replicas (the insert is the claim, in the same
-- transaction as the tick's jobs).
CREATE TABLE schedule_ticks (
    schedule_key TEXT NOT NULL,
    tick_at      BIGINT NOT NULL,
    outcome      TEXT NOT NULL,
    fired_at     BIGINT NOT NULL,
    jobs         BIGINT NOT NULL,
    replica      TEXT NOT NULL,
    PRIMARY KEY (schedule_key, tick_at)
);

-- Debounced rules: at most one job per (rule, key) per window.
CREATE TABLE rule_debounce (
    tenant_id    TEXT NOT NULL,
    rule         TEXT NOT NULL,
    debounce_key TEXT NOT NULL,
    until_at     BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, rule, debounce_key)
);

-- Jobs that must not start before a time (rule delays, schedule jitter).
ALTER TABLE job_runs ADD COLUMN run_after BIGINT;
