import { query, type Db } from './db.js';

export type ResetTrigger = 'timer' | 'cron' | 'manual' | 'startup';
export type ResetOutcome = 'running' | 'success' | 'failure' | 'interrupted' | 'skipped';

/** One attempt of a sweep, as kept in reset_runs. */
export interface ResetAttempt {
  id: bigint | null;
  runId: string;
  trigger: ResetTrigger;
  replicaId: string;
  attempt: number;
  startedAt: Date;
  finishedAt: Date | null;
  countersRolled: number;
  outcome: ResetOutcome;
  error: string | null;
}

interface RunRow {
  id: bigint;
  run_id: string;
  trigger: ResetTrigger;
  replica_id: string;
  attempt: number;
  started_at: Date;
  finished_at: Date | null;
  counters_rolled: bigint;
  outcome: ResetOutcome;
  error: string | null;
}

const COLUMNS =
  'id, run_id, trigger, replica_id, attempt, started_at, finished_at, counters_rolled, outcome, error';

const fromRow = (r: RunRow): ResetAttempt => ({
  id: r.id,
  runId: r.run_id,
  trigger: r.trigger,
  replicaId: r.replica_id,
  attempt: r.attempt,
  startedAt: r.started_at,
  finishedAt: r.finished_at,
  countersRolled: Number(r.counters_rolled),
  outcome: r.outcome,
  error: r.error,
});

/** Inserts or updates an attempt (keyed by run and attempt number); returns its id. */
export async function saveAttempt(db: Db, a: ResetAttempt): Promise<bigint> {
  const rows = await query<{ id: bigint }>(
    db,
    `INSERT INTO reset_runs (run_id, trigger, replica_id, attempt, started_at, finished_at, counters_rolled, outcome, error)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
     ON CONFLICT (run_id, attempt) DO UPDATE SET finished_at = EXCLUDED.finished_at,
       counters_rolled = EXCLUDED.counters_rolled, outcome = EXCLUDED.outcome, error = EXCLUDED.error
     RETURNING id`,
    [
      a.runId,
      a.trigger,
      a.replicaId,
      a.attempt,
      a.startedAt,
      a.finishedAt,
      a.countersRolled,
      a.outcome,
      a.error,
    ],
  );
  return rows[0]!.id;
}

/** Newest first, strictly before `beforeId` when given. */
export async function listAttempts(
  db: Db,
  pageSize: number,
  beforeId: bigint | null,
): Promise<{ runs: ResetAttempt[]; more: boolean }> {
  const rows = await query<RunRow>(
    db,
    `SELECT ${COLUMNS} FROM reset_runs WHERE ($1::bigint IS NULL OR id < $1) ORDER BY id DESC LIMIT $2`,
    [beforeId, pageSize + 1],
  );
  return { runs: rows.slice(0, pageSize).map(fromRow), more: rows.length > pageSize };
}

/** The newest attempt of any replica that is no longer running, if any. */
export async function lastFinishedAttempt(db: Db): Promise<ResetAttempt | null> {
  const rows = await query<RunRow>(
    db,
    `SELECT ${COLUMNS} FROM reset_runs WHERE outcome <> 'running' ORDER BY id DESC LIMIT 1`,
  );
  return rows[0] ? fromRow(rows[0]) : null;
}
