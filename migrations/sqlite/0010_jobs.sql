-- The durable job queue every module uses for side effects (the outbox): a row is written in the
-- same transaction as the change that causes it, claimed with a lease (locked_by/locked_until),
-- retried with backoff and kept with dead_at set once it has failed max_attempts times.
-- dedup_key: at most one live (not dead) job per key.
CREATE TABLE jobs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    queue         TEXT    NOT NULL DEFAULT 'default',
    kind          TEXT    NOT NULL,
    payload       TEXT    NOT NULL,
    dedup_key     TEXT,
    run_at        BIGINT  NOT NULL,
    attempts      BIGINT  NOT NULL DEFAULT 0,
    max_attempts  BIGINT  NOT NULL DEFAULT 12,
    locked_by     TEXT,
    locked_until  BIGINT,
    last_error    TEXT,
    dead_at       BIGINT,
    created_at    BIGINT  NOT NULL
);
CREATE INDEX jobs_ready ON jobs (queue, run_at) WHERE dead_at IS NULL;
CREATE UNIQUE INDEX jobs_dedup ON jobs (dedup_key) WHERE dead_at IS NULL;
