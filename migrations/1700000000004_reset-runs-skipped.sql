-- Up Migration

-- A cron tick that finds a sweep of its replica still running is recorded as 'skipped', with
-- the reason, instead of vanishing without a trace.
ALTER TABLE reset_runs DROP CONSTRAINT reset_runs_outcome_check;
ALTER TABLE reset_runs ADD CONSTRAINT reset_runs_outcome_check
  CHECK (outcome IN ('running', 'success', 'failure', 'interrupted', 'skipped'));
-- GetResetStatus reads the newest run that is not running.
CREATE INDEX reset_runs_finished ON reset_runs (id DESC) WHERE outcome <> 'running';

-- Down Migration

DROP INDEX reset_runs_finished;
ALTER TABLE reset_runs DROP CONSTRAINT reset_runs_outcome_check;
ALTER TABLE reset_runs ADD CONSTRAINT reset_runs_outcome_check
  CHECK (outcome IN ('running', 'success', 'failure', 'interrupted'));
