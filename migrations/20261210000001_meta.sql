-- Small facts the deployment must remember across restarts of any process.
-- `queue_epoch`: the queue's marker as last seen by a reconciler, so a queue
-- that comes back without its data (a Redis restarted empty) is told apart
-- from a fresh deployment.
CREATE TABLE kairos_meta (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
