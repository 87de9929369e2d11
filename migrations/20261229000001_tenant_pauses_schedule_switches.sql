-- Pauses of one tenant's jobs: one kind of it, or all of its kinds
-- (`kind = '*'`). Queues are per kind, so a worker that fetches a paused
-- tenant's job hands it back to the store as `pending` (never started) and
-- the dispatcher leaves such rows alone until the pause is lifted. Changes
-- are recorded in audit_log in the same transaction.
CREATE TABLE paused_tenants (
    tenant_id TEXT NOT NULL,
    kind      TEXT NOT NULL,
    paused_at BIGINT NOT NULL,
    paused_by TEXT NOT NULL,
    reason    TEXT,
    PRIMARY KEY (tenant_id, kind)
);

-- An operator's enable / disable of a schedule (a base schedule's name or
-- `name@tenant`), which wins over `enabled` in the config file. Every
-- scheduler replica reads it each round, so it holds across restarts and
-- replicas without editing the file. Changes are audited.
CREATE TABLE schedule_switches (
    schedule_key TEXT PRIMARY KEY,
    enabled      BIGINT NOT NULL,
    set_at       BIGINT NOT NULL,
    set_by       TEXT NOT NULL
);
