import pg from 'pg';
import type { CallSignal } from '../cancellation.js';
import { QuotaError } from '../domain/errors.js';

export type Db = pg.Pool;
export type Tx = pg.PoolClient;

// int8 columns come back as bigint, never as a lossy number or a string.
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === 20
      ? (v: string) => BigInt(v)
      : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

export interface PoolOptions {
  connectionString: string;
  max?: number;
  statementTimeoutMs?: number;
  /**
   * How long a transaction may sit idle before PostgreSQL ends it (default 15 s; 0, or a
   * statement timeout of 0, sends nothing). An open transaction holds back every follower of the ledger feed
   * (list-events.ts), so one the service forgets must not hold it back for long.
   */
  idleInTransactionTimeoutMs?: number;
  /**
   * How long a connection may sit unused in the pool before it is closed (default 5 minutes;
   * 0: never). A connection opened again costs its next call the connection (about 6 ms here)
   * and PostgreSQL's first run of the append function in that session, which compiles it and
   * plans its statements (about 16 ms against 3 for a Consume on a used connection, measured
   * in docs/benchmarks.md, eighth round); pg-pool's own default of 10 s closed connections
   * between the bursts of an uneven load and paid that again and again.
   */
  idleTimeoutMs?: number;
}

export function createPool(o: PoolOptions): Db {
  const pool = new pg.Pool({
    connectionString: o.connectionString,
    max: o.max ?? 16,
    idleTimeoutMillis: o.idleTimeoutMs ?? 300_000,
    types,
    connectionTimeoutMillis: 5_000,
    // 0 sends no statement_timeout (PgBouncer refuses it as a startup parameter; set it on
    // the database role instead).
    statement_timeout: o.statementTimeoutMs === 0 ? undefined : (o.statementTimeoutMs ?? 10_000),
    // Like statement_timeout, not sent when that is off for PgBouncer: set both on the role.
    idle_in_transaction_session_timeout:
      o.statementTimeoutMs === 0 || o.idleInTransactionTimeoutMs === 0
        ? undefined
        : (o.idleInTransactionTimeoutMs ?? 15_000),
    application_name: 'quota-ledger',
  });
  // An idle client losing its connection must not crash the process; the pool replaces it.
  pool.on('error', () => {});
  return pool;
}

const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

/** Whether an error means "the database cannot be reached right now". */
export function isUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: string }).code ?? '';
  if (UNAVAILABLE_CODES.has(code)) return true;
  // 08xxx connection exceptions, 57P01-57P03 shutdown / cannot connect now.
  if (/^08|^57P0[123]$/.test(code)) return true;
  return /Connection terminated|connection timeout|Client has encountered a connection error|not queryable|Cannot use a pool after calling end/i.test(
    err.message,
  );
}

/** Turns driver failures into errors a caller can act on; QuotaErrors pass through. */
export function mapDbError(err: unknown): Error {
  if (err instanceof QuotaError) return err;
  if (isUnavailable(err)) {
    return new QuotaError(
      'UNAVAILABLE',
      'the ledger database is unreachable; retry with the same idempotency key',
      {
        cause: err,
      },
    );
  }
  const code = (err as { code?: string }).code;
  if (code === '57014') {
    return new QuotaError(
      'UNAVAILABLE',
      'the ledger database took too long to answer; retry later',
      { cause: err },
    );
  }
  if (code === '40001' || code === '40P01') {
    return new QuotaError(
      'UNAVAILABLE',
      'the ledger database aborted a conflicting transaction; retry',
      {
        cause: err,
      },
    );
  }
  return err instanceof Error ? err : new Error(String(err));
}

/** A caller gave up (or its deadline passed) before its change committed: nothing was. */
export const cancelledBeforeCommit = (): QuotaError =>
  new QuotaError(
    'DEADLINE_EXCEEDED',
    'the call was cancelled or its deadline passed before the change was committed; nothing was recorded',
  );

/** What the database layer reports, for metrics. */
export interface DbObserver {
  /** A transaction finished: committed, or rolled back by a refusal or a failure. */
  transaction(seconds: number, outcome: 'commit' | 'rollback' | 'error'): void;
  /** A plain read finished. */
  read(seconds: number, ok: boolean): void;
  /** Events of one type were appended to the ledger and committed. */
  eventsAppended(type: string, n: number): void;
  /**
   * A Consume write and the states this replica kept (SubjectCache): `used` (decided from them,
   * and the append took it), `stale` (the append refused them: something else wrote), `reread`
   * (decided again from a read: a refusal, or a key only a read can clear) or `missing` (not
   * every subject was kept).
   */
  keptState?(outcome: 'used' | 'stale' | 'reread' | 'missing'): void;
}

/**
 * The database and whoever watches it: what every ledger function is given, so per-pool state
 * is explicit rather than hidden in module maps. A bare pool works too (nothing is reported).
 */
export interface Store {
  db: Db;
  observer?: DbObserver;
}

export const storeOf = (s: Db | Store): Store => (s instanceof pg.Pool ? { db: s } : s);

/** Reports appended events (by type) once their transaction has committed. */
export function reportAppended(s: Db | Store, counts: Record<string, number>): void {
  const observer = storeOf(s).observer;
  for (const [type, n] of Object.entries(counts)) observer?.eventsAppended(type, n);
}

/** The SQLSTATE of a driver error, or of the one a mapped error wraps. */
export function pgCode(err: unknown): string | undefined {
  const own = (err as { code?: unknown } | null)?.code;
  const cause = err instanceof Error ? (err.cause as { code?: unknown } | undefined) : undefined;
  const code = typeof own === 'string' && own.length === 5 ? own : cause?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * Runs `fn`, whose writes are one autocommitted statement (a transaction of its own), and
 * reports it as a transaction.
 */
export async function autocommit<T>(s: Db | Store, fn: () => Promise<T>): Promise<T> {
  const t0 = process.hrtime.bigint();
  const observer = storeOf(s).observer;
  try {
    const result = await fn();
    observer?.transaction(elapsed(t0), 'commit');
    return result;
  } catch (err) {
    observer?.transaction(elapsed(t0), 'error');
    throw err;
  }
}

const elapsed = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e9;

/**
 * Runs `fn` in one transaction: all of its writes commit together or none do. If `signal`
 * has fired by the time `fn` is done (the caller gave up or its deadline passed), the
 * transaction is rolled back rather than committed behind the caller's back.
 */
export async function inTransaction<T>(
  s: Db | Store,
  fn: (tx: Tx) => Promise<T>,
  signal?: CallSignal,
): Promise<T> {
  const t0 = process.hrtime.bigint();
  const { db, observer } = storeOf(s);
  let tx: Tx;
  try {
    tx = await db.connect();
  } catch (err) {
    observer?.transaction(elapsed(t0), 'error');
    throw mapDbError(err);
  }
  let broken: Error | undefined;
  // A connection that dies while checked out emits 'error' on the client; with no listener
  // that would crash the process. The query in progress fails anyway, and the client is
  // destroyed instead of going back to the pool.
  const onError = (err: Error) => {
    broken = err;
  };
  tx.on('error', onError);
  try {
    await tx.query('BEGIN');
    const result = await fn(tx);
    if (signal?.aborted) throw cancelledBeforeCommit();
    await tx.query('COMMIT');
    observer?.transaction(elapsed(t0), 'commit');
    return result;
  } catch (err) {
    try {
      await tx.query('ROLLBACK');
    } catch (rollbackErr) {
      broken = rollbackErr instanceof Error ? rollbackErr : new Error(String(rollbackErr));
    }
    observer?.transaction(elapsed(t0), err instanceof QuotaError ? 'rollback' : 'error');
    throw mapDbError(err);
  } finally {
    tx.off('error', onError);
    // A client whose connection broke is destroyed rather than handed to the next caller.
    tx.release(broken);
  }
}

/** Runs plain reads outside any transaction, reporting their time and mapping failures. */
export async function reading<T>(s: Db | Store, fn: () => Promise<T>): Promise<T> {
  const t0 = process.hrtime.bigint();
  const observer = storeOf(s).observer;
  try {
    const result = await fn();
    observer?.read(elapsed(t0), true);
    return result;
  } catch (err) {
    observer?.read(elapsed(t0), false);
    throw mapDbError(err);
  }
}

/** A single read outside any transaction. */
export async function query<R extends pg.QueryResultRow>(
  s: Db | Store,
  text: string,
  values: unknown[] = [],
): Promise<R[]> {
  return reading(s, async () => (await storeOf(s).db.query<R>(text, values)).rows);
}
