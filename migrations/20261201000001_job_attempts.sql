-- Every attempt of every job run: who ran it, when, and how it ended. The
-- job_runs row keeps the current state; this is the history ops read
-- (`kairos jobs show`, GET /v1/jobs/{id}) and the dashboard will show.
CREATE TABLE job_attempts (
    job_id      TEXT NOT NULL,
    attempt     BIGINT NOT NULL,
    worker      TEXT NOT NULL,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT NOT NULL,
    outcome     TEXT NOT NULL,
    error       TEXT,
    PRIMARY KEY (job_id, attempt)
);
