-- Executive reports (the `report` job kind): every generated report, its
-- versions, and the deliveries of each. Portable SQLite + Postgres: BIGINT
-- epoch-ms timestamps, TEXT JSON.

-- One row per (tenant, account, period, version). `account_id` is '' for the
-- tenant's portfolio report ('' rather than NULL so the unique key needs no
-- NULL handling on either engine). The scheduled run writes version 1 with
-- ON CONFLICT DO NOTHING, which is what makes a re-fired tick, a retried job
-- or a second replica harmless; only an explicit re-run adds a version.
CREATE TABLE reports (
    id                TEXT PRIMARY KEY,            -- UUIDv5 of tenant|account|period|version
    tenant_id         TEXT NOT NULL,
    account_id        TEXT NOT NULL,
    scope             TEXT NOT NULL,               -- account | tenant
    period            TEXT NOT NULL,               -- 2026-W48 | 2026-11
    version           BIGINT NOT NULL,
    period_start      BIGINT NOT NULL,
    period_end        BIGINT NOT NULL,
    time_zone         TEXT NOT NULL,
    language          TEXT NOT NULL,               -- es | en
    narrative_source  TEXT NOT NULL,               -- template | llm
    llm_model         TEXT,
    tokens_prompt     BIGINT,
    tokens_completion BIGINT,
    generation_ms     BIGINT NOT NULL,
    facts             TEXT NOT NULL,               -- JSON: the facts (what the narrative may say)
    narrative         TEXT NOT NULL,               -- JSON: summary, highlights, attention, next steps
    html              TEXT NOT NULL,
    markdown          TEXT NOT NULL,
    delivery_state    TEXT NOT NULL,               -- pending | delivered | partial | failed | none
    delivery_error    TEXT,
    job_id            TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    UNIQUE (tenant_id, account_id, period, version)
);
CREATE INDEX reports_tenant ON reports (tenant_id, created_at, id);

-- One row per recipient of a report. The row is committed (state `sending`,
-- a deterministic message id) before anything is sent, so a crash between
-- the send and its record is seen by the next attempt and never re-sent
-- (state `unknown`, recorded on the report).
CREATE TABLE report_deliveries (
    report_id     TEXT NOT NULL,
    channel       TEXT NOT NULL,                   -- email | webhook
    recipient     TEXT NOT NULL,                   -- address, or the webhook's tenant key
    language      TEXT NOT NULL,
    message_id    TEXT NOT NULL,
    state         TEXT NOT NULL,                   -- sending | sent | failed | unknown
    attempts      BIGINT NOT NULL DEFAULT 0,
    lease_until   BIGINT,
    error         TEXT,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (report_id, channel, recipient)
);
