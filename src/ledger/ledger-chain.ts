import { createHash } from 'node:crypto';
import { inTransaction, query, type Db } from './db.js';

/**
 * The ledger's hash chain (migration 1700000000011): each event's hash is
 * sha256(previous hash of its subject || ledger_event_canonical(event)), written by a trigger.
 * Verification recomputes every link here, in the service, from the canonical bytes and the
 * stored hashes, so it does not trust the database's own chaining code either.
 */

export type ChainBreakKind =
  /** The hash is not that of the event's content on its predecessor: modified, forged, reordered. */
  | 'HASH_MISMATCH'
  /** Sequences jump: events were deleted (`sequence` is the first one missing). */
  | 'SEQUENCE_GAP'
  /** A checkpoint saw the subject's chain reach `sequence`; that event is gone or differs. */
  | 'TAIL_CUT'
  /** The checkpoint records themselves do not match the heads or each other. */
  | 'CHECKPOINT_MISMATCH';

export interface ChainBreak {
  kind: ChainBreakKind;
  subject: string;
  sequence: bigint;
  /** The event's position; null when there is no such event (a gap, a cut tail). */
  position: bigint | null;
  detail: string;
}

export interface LedgerVerification {
  subjects: number;
  events: number;
  breaks: ChainBreak[];
  /** More breaks than reported (MAX_BREAKS); fix or investigate these first. */
  truncated: boolean;
  checkpoint: { id: bigint; createdAt: Date } | null;
}

export const MAX_BREAKS = 1000;
const BATCH = 5_000;

interface LinkRow {
  subject: string;
  sequence: bigint;
  position: bigint;
  hash: Buffer;
  canonical: Buffer;
}

const sha256 = (...parts: Buffer[]): Buffer => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};

/** How far a verification has come: what `verifyLedgerSteps` yields. */
export interface VerifyProgress {
  subjects: number;
  events: number;
  /** Breaks found so far, listed or not. */
  breaks: number;
  /** The subject of the last event (or checkpoint head) checked; chains go in subject order. */
  subject: string;
}

export interface ProgressPace {
  /** Yield after every this many subjects... */
  everySubjects: number;
  /** ...and whenever this long has passed since the last yield, so a huge subject shows life too. */
  everyMs: number;
}

export const PROGRESS_DEFAULTS: ProgressPace = { everySubjects: 1000, everyMs: 1000 };

/**
 * Recomputes the chains of every subject (or one), a batch of events at a time in (subject,
 * sequence) order: memory stays bounded by the batch, and each statement is short, so it runs
 * online next to the writers.
 */
export async function verifyLedger(db: Db, subject: string | null): Promise<LedgerVerification> {
  const steps = verifyLedgerSteps(db, subject, { everySubjects: Infinity, everyMs: Infinity });
  for (;;) {
    const step = await steps.next();
    if (step.done) return step.value;
  }
}

/**
 * verifyLedger with progress: yields how far it has come at `pace`, returns the result. The
 * consumer pulls, so a reader that stops reading pauses the verification (no statement stays
 * open between yields, nothing piles up), and dropping the generator ends it.
 */
export async function* verifyLedgerSteps(
  db: Db,
  subject: string | null,
  pace: ProgressPace = PROGRESS_DEFAULTS,
): AsyncGenerator<VerifyProgress, LedgerVerification> {
  const out: LedgerVerification = {
    subjects: 0,
    events: 0,
    breaks: [],
    truncated: false,
    checkpoint: null,
  };
  let found = 0;
  const report = (b: ChainBreak): void => {
    found++;
    if (out.breaks.length < MAX_BREAKS) out.breaks.push(b);
    else out.truncated = true;
  };
  let lastYield = Date.now();
  const now = (at: string): VerifyProgress => {
    lastYield = Date.now();
    return { subjects: out.subjects, events: out.events, breaks: found, subject: at };
  };
  const due = (): boolean => Date.now() - lastYield >= pace.everyMs;
  let prev: { subject: string; sequence: bigint; hash: Buffer } | null = null;
  let after: [string, bigint] = ['', 0n];
  for (;;) {
    const rows = await query<LinkRow>(
      db,
      `SELECT subject, sequence, position, hash, ledger_event_canonical(e) AS canonical
         FROM ledger_events e
        WHERE (subject, sequence) > ($1, $2) AND ($3::text IS NULL OR subject = $3)
        ORDER BY subject, sequence LIMIT ${BATCH}`,
      [after[0], after[1], subject],
    );
    for (const r of rows) {
      const continues: boolean = prev?.subject === r.subject;
      // A subject is done when the next one starts (or the scan ends, below).
      if (!continues && prev && out.subjects % pace.everySubjects === 0) yield now(prev.subject);
      if (!continues) out.subjects++;
      out.events++;
      const expected: bigint = continues ? prev!.sequence + 1n : 1n;
      if (r.sequence !== expected) {
        report({
          kind: 'SEQUENCE_GAP',
          subject: r.subject,
          sequence: expected,
          position: null,
          detail: `events ${expected}..${r.sequence - 1n} are missing (deleted); the next is at position ${r.position}`,
        });
      } else if (!sha256(continues ? prev!.hash : Buffer.alloc(0), r.canonical).equals(r.hash)) {
        report({
          kind: 'HASH_MISMATCH',
          subject: r.subject,
          sequence: r.sequence,
          position: r.position,
          detail:
            'its hash is not that of its content on the previous event: modified, forged or reordered',
        });
      }
      prev = { subject: r.subject, sequence: r.sequence, hash: r.hash };
      if (due()) yield now(r.subject);
    }
    if (rows.length < BATCH) {
      const last = prev as { subject: string } | null;
      if (last && out.subjects % pace.everySubjects === 0) yield now(last.subject);
      break;
    }
    after = [rows.at(-1)!.subject, rows.at(-1)!.sequence];
  }
  for await (const at of checkHeads(db, subject, report)) if (due()) yield now(at);
  if (subject === null) out.checkpoint = await checkCheckpoints(db, report);
  return out;
}

/**
 * Every head a checkpoint recorded must still be in the chain, with the same hash. Yields the
 * subject of each batch's last head, for progress.
 */
async function* checkHeads(
  db: Db,
  subject: string | null,
  report: (b: ChainBreak) => void,
): AsyncGenerator<string> {
  let after = '';
  for (;;) {
    const rows = await query<{
      subject: string;
      sequence: bigint;
      position: bigint | null;
      last: bigint | null;
      ok: boolean;
    }>(
      db,
      `SELECT h.subject, h.sequence, e.position, e.hash IS NOT DISTINCT FROM h.hash AS ok,
              (SELECT max(sequence) FROM ledger_events l WHERE l.subject = h.subject) AS last
         FROM ledger_checkpoint_heads h
         LEFT JOIN ledger_events e ON e.subject = h.subject AND e.sequence = h.sequence
        WHERE h.subject > $1 AND ($2::text IS NULL OR h.subject = $2)
        ORDER BY h.subject LIMIT ${BATCH}`,
      [after, subject],
    );
    for (const r of rows) {
      if (r.ok) continue;
      report({
        kind: 'TAIL_CUT',
        subject: r.subject,
        sequence: r.sequence,
        position: r.position,
        detail:
          r.position === null
            ? `a checkpoint saw the chain reach ${r.sequence}; it now ends at ${r.last ?? 'nothing'}`
            : `a checkpoint saw a different event ${r.sequence}: the chain was rewritten below it`,
      });
    }
    if (rows.length > 0) yield rows.at(-1)!.subject;
    if (rows.length < BATCH) return;
    after = rows.at(-1)!.subject;
  }
}

/**
 * The newest checkpoint's root must be the digest of the heads, and each checkpoint must chain
 * to the one before it. Returns the newest checkpoint.
 */
async function checkCheckpoints(
  db: Db,
  report: (b: ChainBreak) => void,
): Promise<LedgerVerification['checkpoint']> {
  const broken = await query<{ id: bigint }>(
    db,
    `SELECT id FROM (SELECT id, chain, root, lag(chain) OVER (ORDER BY id) AS prev
                       FROM ledger_checkpoints) c
      WHERE chain <> sha256(coalesce(prev, ''::bytea) || root) LIMIT ${MAX_BREAKS}`,
  );
  for (const b of broken) {
    report({
      kind: 'CHECKPOINT_MISMATCH',
      subject: '',
      sequence: 0n,
      position: null,
      detail: `checkpoint ${b.id} was edited: its chain is not that of its root on the checkpoint before it`,
    });
  }
  const [newest] = await query<{ id: bigint; created_at: Date; ok: boolean }>(
    db,
    `SELECT id, created_at, root = (${ROOT}) AND subjects = (SELECT count(*) FROM ledger_checkpoint_heads) AS ok
       FROM ledger_checkpoints ORDER BY id DESC LIMIT 1`,
  );
  if (!newest) return null;
  if (!newest.ok) {
    report({
      kind: 'CHECKPOINT_MISMATCH',
      subject: '',
      sequence: 0n,
      position: null,
      detail: `the heads no longer hash to checkpoint ${newest.id}'s root: they were edited`,
    });
  }
  return { id: newest.id, createdAt: newest.created_at };
}

/** The digest of every head, in byte order of subject (independent of the collation). */
const ROOT = `SELECT ledger_chain(ledger_head_canonical(subject, sequence, hash) ORDER BY subject COLLATE "C")
                FROM ledger_checkpoint_heads`;

export interface Checkpoint {
  id: bigint;
  subjects: bigint;
  root: string;
}

/**
 * Records every subject's head, then a checkpoint over all of them, in one transaction. Heads
 * only move forward: a head whose event has since vanished stays as it was, for verification
 * to report. Replicas take turns (an advisory lock), so the checkpoints chain in one line.
 */
export async function writeCheckpoint(db: Db, now: Date): Promise<Checkpoint> {
  return inTransaction(db, async (tx) => {
    await tx.query("SELECT pg_advisory_xact_lock(hashtext('quota-ledger-checkpoint'))");
    await tx.query(
      `INSERT INTO ledger_checkpoint_heads (subject, sequence, hash)
       SELECT s.subject, s.last_sequence, e.hash
         FROM subjects s JOIN ledger_events e ON e.subject = s.subject AND e.sequence = s.last_sequence
        WHERE s.last_sequence > 0
       ON CONFLICT (subject) DO UPDATE SET sequence = EXCLUDED.sequence, hash = EXCLUDED.hash
        WHERE ledger_checkpoint_heads.sequence < EXCLUDED.sequence`,
    );
    const { rows } = await tx.query<{ id: bigint; subjects: bigint; root: string }>(
      `WITH r AS (SELECT coalesce((${ROOT}), ''::bytea) AS root,
                         (SELECT count(*) FROM ledger_checkpoint_heads) AS subjects),
            p AS (SELECT chain FROM ledger_checkpoints ORDER BY id DESC LIMIT 1)
       INSERT INTO ledger_checkpoints (created_at, subjects, root, chain)
       SELECT $1, r.subjects, r.root, sha256(coalesce((SELECT chain FROM p), ''::bytea) || r.root) FROM r
       RETURNING id, subjects, encode(root, 'hex') AS root`,
      [now],
    );
    return rows[0]!;
  });
}
