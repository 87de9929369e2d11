-- Sentiment scoring of comments and tickets, and the alert fields it adds.
-- Portable SQLite + Postgres: BIGINT epoch-ms timestamps, TEXT JSON.

-- One row per scored text. The id is the job id, so a re-run of the same
-- job overwrites its own row instead of adding a second one.
CREATE TABLE sentiment_scores (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL,
    account_id     TEXT NOT NULL,
    event_id       TEXT NOT NULL,
    event_type     TEXT NOT NULL,
    label          TEXT NOT NULL,            -- negative | neutral | positive
    score          DOUBLE PRECISION NOT NULL, -- confidence of the label
    polarity       DOUBLE PRECISION NOT NULL, -- P(positive) - P(negative), in [-1, 1]
    probabilities  TEXT NOT NULL,            -- JSON {label: p}
    language       TEXT,                     -- es | en | NULL (undetermined)
    urgency        INTEGER NOT NULL,         -- 0..100
    keywords       TEXT NOT NULL,            -- JSON list of urgency keywords found
    model_version  TEXT NOT NULL,
    job_id         TEXT NOT NULL,
    scored_at      BIGINT NOT NULL
);
CREATE INDEX sentiment_scores_account ON sentiment_scores (tenant_id, account_id, scored_at);
CREATE INDEX sentiment_scores_tenant ON sentiment_scores (tenant_id, scored_at);

-- Alerts say which event raised them and how urgent they are (sentiment);
-- NULL for alerts without either (churn).
ALTER TABLE alerts ADD COLUMN event_id TEXT;
ALTER TABLE alerts ADD COLUMN urgency INTEGER;
CREATE INDEX alerts_tenant_urgency ON alerts (tenant_id, urgency);
