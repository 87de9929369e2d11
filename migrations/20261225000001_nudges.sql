-- Proactive nudges: one row per (person, rule, window) the rules decided to
-- nudge, and every delivery attempt. Portable SQLite + Postgres: BIGINT
-- epoch-ms timestamps, TEXT JSON.

-- A nudge and its fate. `dedupe_key` is `rule|account|person|window`: the
-- unique key makes a second trigger in the same window (a replayed event, a
-- second worker, the next sweep) a no-op.
CREATE TABLE nudges (
    id          TEXT PRIMARY KEY,             -- UUIDv5 of tenant + dedupe_key
    tenant_id   TEXT NOT NULL,
    rule        TEXT NOT NULL,
    account_id  TEXT NOT NULL,
    person_id   TEXT NOT NULL,
    dedupe_key  TEXT NOT NULL,
    trigger_info TEXT NOT NULL,               -- JSON: what fired the rule
    status      TEXT NOT NULL,                -- planned | delayed | sent | skipped | capped | dry_run | holdout
    variant     TEXT,                         -- A/B variant (stable hash of rule + person); NULL without variants
    reason      TEXT NOT NULL DEFAULT '',     -- why: the guard that delayed, skipped or capped it
    channel     TEXT,                         -- the channel it went (or would have gone) out on
    language    TEXT,
    subject     TEXT,
    body        TEXT,
    priority    BIGINT NOT NULL DEFAULT 0,
    urgent      BIGINT NOT NULL DEFAULT 0,
    dry_run     BIGINT NOT NULL DEFAULT 0,
    run_after   BIGINT NOT NULL,              -- not before (quiet hours move it)
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    sent_at     BIGINT,
    read_at     BIGINT,                       -- in-app: when the person marked it read
    opened_at   BIGINT,                       -- outcome events (nudge.opened / clicked / replied):
    clicked_at  BIGINT,                       --   the first of each, from the product
    replied_at  BIGINT,
    UNIQUE (tenant_id, dedupe_key)
);
CREATE INDEX nudges_account ON nudges (tenant_id, account_id, created_at);
CREATE INDEX nudges_person ON nudges (tenant_id, person_id, status, sent_at);
CREATE INDEX nudges_sent ON nudges (tenant_id, status, sent_at);

-- Every attempt on every channel, in order: sent, failed, no consent, no
-- address, not configured, dry run.
CREATE TABLE nudge_deliveries (
    id         TEXT PRIMARY KEY,              -- UUIDv7
    tenant_id  TEXT NOT NULL,
    nudge_id   TEXT NOT NULL,
    attempt    BIGINT NOT NULL,               -- the delivery job's attempt
    channel    TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    detail     TEXT NOT NULL DEFAULT '',
    at         BIGINT NOT NULL
);
CREATE INDEX nudge_deliveries_nudge ON nudge_deliveries (tenant_id, nudge_id, at);
