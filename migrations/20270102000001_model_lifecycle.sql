-- Model lifecycle: champion/challenger retraining records and the reference
-- distributions drift is measured against. Portable SQLite + Postgres.

-- One row per retraining decision, kept whether the challenger won or not,
-- so "why is this model active?" always has an answer. `id` is the job id
-- of the retraining (a retried job finds its own row and stops there).
CREATE TABLE model_evaluations (
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,          -- 'churn'
    scope           TEXT NOT NULL,          -- tenant id, or '' (global)
    challenger      TEXT,                   -- version trained (NULL when skipped before training)
    champion        TEXT,                   -- version active at the time (NULL: none)
    metric          TEXT NOT NULL,          -- 'auc'
    challenger_value DOUBLE PRECISION,
    champion_value  DOUBLE PRECISION,
    margin          DOUBLE PRECISION NOT NULL,
    window_start    BIGINT NOT NULL,        -- the held-out window both were scored on (epoch ms)
    window_end      BIGINT NOT NULL,
    rows_evaluated  BIGINT NOT NULL,
    positives       BIGINT NOT NULL,
    decision        TEXT NOT NULL,          -- 'promoted' | 'kept' | 'skipped'
    reason          TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE INDEX model_evaluations_scope ON model_evaluations (kind, scope, created_at);

-- The distribution of each input feature in a model's training rows
-- (decile edges and the share of rows per bin, plus the missing share):
-- input drift is the population stability index of a week's scored rows
-- against this. Models registered without one (CSV-trained, older) are
-- compared with their first monitored week instead.
CREATE TABLE model_baselines (
    version     TEXT PRIMARY KEY REFERENCES models (version),
    baseline    TEXT NOT NULL,              -- JSON {feature: {edges, fractions, missing}}
    rows        BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);
