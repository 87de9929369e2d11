-- Jobs an ingest committed `queued` and has yet to push: one row per
-- ingest transaction (a group commit), written in that transaction and
-- deleted once its push is done. A row older than the dispatcher's
-- `push_deadline` was left by a process that died between its commit and
-- its push: the dispatcher hands those jobs back as `pending` and queues
-- them (`enqueue::dispatch_pending`), so no job waits `queued` with no
-- message. `job_ids` is a JSON array of `job_runs.id`.
CREATE TABLE push_intents (
    id TEXT PRIMARY KEY,
    job_ids TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX push_intents_created ON push_intents (created_at);
