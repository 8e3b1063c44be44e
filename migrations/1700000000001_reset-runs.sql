-- Up Migration

-- One row per attempt of a reset sweep: the run history operators page through. Small and
-- written by the schedulers only, so it stays a plain (reference) table.
CREATE TABLE reset_runs (
  id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  run_id          uuid        NOT NULL,
  trigger         text        NOT NULL CHECK (trigger IN ('timer', 'cron', 'manual', 'startup')),
  replica_id      text        NOT NULL,
  attempt         integer     NOT NULL CHECK (attempt >= 1),
  started_at      timestamptz NOT NULL,
  finished_at     timestamptz,
  counters_rolled bigint      NOT NULL DEFAULT 0,
  outcome         text        NOT NULL CHECK (outcome IN ('running', 'success', 'failure', 'interrupted')),
  error           text,
  UNIQUE (run_id, attempt)
);
CREATE INDEX reset_runs_success ON reset_runs (finished_at) WHERE outcome = 'success';

-- Down Migration
DROP TABLE reset_runs;
