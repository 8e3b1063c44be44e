import type { CallSignal } from '../cancellation.js';
import { DEFAULT_SUBJECT } from '../domain/quota.js';
import type { SubjectChanges } from '../domain/subject-state.js';
import { append, type Appended } from './append.js';
import type { LedgerDeps } from './commands.js';
import {
  autocommit,
  cancelledBeforeCommit,
  inTransaction,
  mapDbError,
  pgCode,
  reportAppended,
  type Db,
  type Tx,
} from './db.js';
import { readSubjects, type LoadedSubject, type StateKeys } from './subject-state.js';

/** What a command decided for the subjects it read: changes to append, and its answer. */
export interface Outcome<R> {
  changes: SubjectChanges[];
  result: R;
  /**
   * The answer leans on something only a read can vouch for: that no usage was recorded under
   * an idempotency key the command found no usage for. A decision taken from kept states (see
   * SubjectCache) that says so is taken again from a fresh read.
   */
  needsRead?: boolean;
}

/**
 * A command on some subjects: given their state as read (and the connection it was read on,
 * for any further reads, e.g. of past events), decides what to append and what to answer.
 * It may run twice (see writeSubjects) and must not write.
 */
export type Command<R> = (
  q: Db | Tx,
  states: Map<string, LoadedSubject>,
  now: Date,
) => Promise<Outcome<R>> | Outcome<R>;

// Raised by the append when another writer got to a subject between our read and write.
const CONFLICT = '40001';
// An idempotency key recorded by another writer in between: the locked run replays it.
const DUPLICATE_KEY = '23505';

/**
 * Read → decide → append, the one way every writer changes the ledger.
 *
 * First without any lock, in two round trips: one statement reads the subjects' state, the
 * command decides, and one autocommitted statement appends what it decided, provided no
 * other writer has touched those subjects since the read (the append checks each
 * subject's sequence and row version). A decision that appends nothing is answered at once.
 * If a subject has changed, or is new and something is to be appended to it, the command
 * runs again in a transaction that first locks the subjects (in sorted order, so writers
 * never deadlock each other), creating their rows. Either way the answer is given only after
 * the appended events have committed.
 *
 * With `keys.cached` and a SubjectCache in `deps`, the read is skipped when this process's
 * last append left the state of every subject: one round trip. That decision stands only if
 * the append takes it (nothing changed since, see SubjectCache) and it appends to every
 * subject and does not say it needs a read; otherwise the command runs again as above.
 */
export async function writeSubjects<R>(
  deps: LedgerDeps,
  keys: StateKeys,
  command: Command<R>,
  signal?: CallSignal,
): Promise<R> {
  // Holds lapsed by now are left out of the decisions; one that lapses between this read and
  // the decision still counts, which can only refuse, never overspend.
  const sorted = { ...keys, subjects: [...new Set(keys.subjects)].sort() };
  try {
    const kept = keys.cached && keys.metrics && deps.cache?.states(sorted.subjects, keys.metrics);
    if (kept) {
      const out = await command(deps.db, kept, deps.clock.now());
      const written = writtenSubjects(out.changes);
      if (!out.needsRead && [...kept.keys()].every((s) => written.has(s))) {
        try {
          await appendNow(deps, sorted, kept, out, signal);
          deps.observer?.keptState?.('used');
          return out.result;
        } catch (err) {
          if (pgCode(err) !== CONFLICT) throw err;
          deps.observer?.keptState?.('stale');
          // The subjects or the defaults moved: the read below brings both back.
          deps.cache!.forget([...sorted.subjects, DEFAULT_SUBJECT]);
        }
      } else {
        deps.observer?.keptState?.('reread');
      }
    } else if (keys.cached && deps.cache) {
      deps.observer?.keptState?.('missing');
    }
    const states = await readSubjects(deps.db, { ...sorted, lapsedAt: deps.clock.now() });
    const out = await command(deps.db, states, deps.clock.now());
    if (out.changes.every((c) => c.events.length === 0)) return out.result;
    if (out.changes.every((c) => states.get(c.subject)!.version !== null)) {
      await appendNow(deps, sorted, states, out, signal);
      return out.result;
    }
  } catch (err) {
    const code = pgCode(err);
    if (code !== CONFLICT && code !== DUPLICATE_KEY) {
      // A lost connection may mean a failed-over or restored database, whose row versions
      // can repeat ones kept here: keep nothing from before it.
      deps.cache?.clear();
      throw mapDbError(err);
    }
  }
  return writeLocked(deps, sorted, command, signal);
}

/** The optimistic append: one autocommitted statement, checked against the states decided on. */
async function appendNow<R>(
  deps: LedgerDeps,
  keys: StateKeys,
  states: Map<string, LoadedSubject>,
  out: Outcome<R>,
  signal?: CallSignal,
): Promise<void> {
  if (signal?.aborted) throw cancelledBeforeCommit();
  const batch = withVersions(out.changes, states);
  const defaultsVersion = states.values().next().value!.defaultsVersion;
  const appended = await autocommit(deps, () => append(deps.db, batch, defaultsVersion));
  committed(deps, keys, states, out.changes, appended);
}

/**
 * After a commit: counts the events, and keeps the states the command left for its next
 * decision (or, for commands that do not decide from kept states, drops what was kept).
 */
function committed(
  deps: LedgerDeps,
  keys: StateKeys,
  states: Map<string, LoadedSubject>,
  changes: readonly SubjectChanges[],
  appended: Appended,
): void {
  reportAppended(deps, appended.counts);
  if (!deps.cache) return;
  const written = writtenSubjects(changes);
  if (keys.cached && keys.metrics && appended.version !== null) {
    deps.cache.remember(states, keys.metrics, written, appended.version);
  } else {
    deps.cache.forget(keys.subjects);
  }
}

/** The subjects whose rows the changes write (the append checks and moves them). */
const writtenSubjects = (changes: readonly SubjectChanges[]): Set<string> =>
  new Set(
    changes.filter((c) => c.events.length > 0 || c.counters.length > 0).map((c) => c.subject),
  );

/** The same under the subjects' locks, creating the subject rows that do not exist yet. */
async function writeLocked<R>(
  deps: LedgerDeps,
  keys: StateKeys,
  command: Command<R>,
  signal?: CallSignal,
): Promise<R> {
  let done: (() => void) | undefined;
  const result = await inTransaction(
    deps,
    async (tx) => {
      const created = await lockSubjects(tx, keys.subjects);
      // Read after the locks are held: in READ COMMITTED each statement sees what committed
      // before it started, so these rows are the latest any writer of these subjects left.
      const now = deps.clock.now();
      const states = await readSubjects(tx, { ...keys, lapsedAt: now });
      const out = await command(tx, states, now);
      const appended = await append(tx, withVersions(out.changes, states));
      // A subject row made just now for a command that appended nothing to it would be an
      // empty trace of a refusal. (The service's role may not DELETE from subjects; this
      // function removes only rows that never got an event.)
      const unused = created.filter((s) => states.get(s)!.lastSequence === 0n);
      if (unused.length > 0) {
        await tx.query('SELECT quota_forget_unused_subjects($1::text[])', [unused]);
      }
      done = () => committed(deps, keys, states, out.changes, appended);
      return out.result;
    },
    signal,
  );
  done?.();
  return result;
}

/** Each subject's changes with what its row must still be: as it was read. */
const withVersions = (changes: SubjectChanges[], states: Map<string, LoadedSubject>) =>
  changes.map((c) => {
    const read = states.get(c.subject)!;
    return { ...c, version: read.version, lastSequence: read.readSequence };
  });

/** Locks the subjects in sorted order; returns those whose rows it had to create. */
async function lockSubjects(tx: Tx, subjects: readonly string[]): Promise<string[]> {
  const lockSql = `SELECT subject FROM subjects WHERE subject = ANY($1::text[])
    ORDER BY subject FOR UPDATE`;
  const found = new Set(
    (await tx.query<{ subject: string }>(lockSql, [subjects])).rows.map((r) => r.subject),
  );
  const missing = subjects.filter((s) => !found.has(s));
  if (missing.length > 0) {
    await tx.query(
      `INSERT INTO subjects (subject) SELECT unnest($1::text[]) ORDER BY 1 ON CONFLICT DO NOTHING`,
      [missing],
    );
    await tx.query(lockSql, [missing]);
  }
  return missing;
}

/** A command on one subject whose decision is a pure function of its state and `now`. */
export function writeSubject<R>(
  deps: LedgerDeps,
  subject: string,
  metrics: readonly string[] | null,
  decide: (
    state: LoadedSubject,
    now: Date,
    q: Db | Tx,
  ) => Promise<{ changes: SubjectChanges; result: R }> | { changes: SubjectChanges; result: R },
  signal?: CallSignal,
): Promise<R> {
  return writeSubjects(
    deps,
    { subjects: [subject], metrics },
    async (q, states, now) => {
      const d = await decide(states.get(subject)!, now, q);
      return { changes: [d.changes], result: d.result };
    },
    signal,
  );
}
