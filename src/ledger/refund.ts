import type { CallSignal } from '../cancellation.js';
import type { StoredEvent } from '../domain/events.js';
import { decideRefund, type RefundCommand, type RefundResult } from '../domain/refund.js';
import { EVENT_COLUMNS, eventFromRow, type EventRow } from './codec.js';
import type { LedgerDeps } from './commands.js';
import type { Db, Tx } from './db.js';
import { writeSubject } from './write.js';

export type { RefundResult } from '../domain/refund.js';

/** The subject's event of `type` recorded under idempotency key `key`, if any. */
export async function eventByKey(
  q: Db | Tx,
  subject: string,
  type: 'USAGE' | 'REFUND' | 'RESERVED',
  key: string,
): Promise<StoredEvent | null> {
  const rows = await q.query<EventRow>(
    `SELECT ${EVENT_COLUMNS} FROM ledger_events WHERE subject = $1 AND type = $2 AND idempotency_key = $3`,
    [subject, type, key],
  );
  return rows.rows[0] ? eventFromRow(rows.rows[0]) : null;
}

async function refundedSoFar(q: Db | Tx, subject: string, usageSequence: bigint): Promise<bigint> {
  const rows = await q.query<{ total: bigint }>(
    `SELECT coalesce(sum(amount), 0)::bigint AS total FROM ledger_events
      WHERE subject = $1 AND type = 'REFUND' AND data->>'refundedSequence' = $2`,
    [subject, usageSequence.toString()],
  );
  return rows.rows[0]?.total ?? 0n;
}

/** Gives usage back (see decideRefund), reading the refund's and the usage's history first. */
export function refund(
  deps: LedgerDeps,
  cmd: RefundCommand,
  actor: string,
  signal?: CallSignal,
): Promise<RefundResult> {
  return writeSubject(
    deps,
    cmd.subject,
    [cmd.metric],
    async (state, now, q) => {
      const prior = cmd.idempotencyKey
        ? await eventByKey(q, cmd.subject, 'REFUND', cmd.idempotencyKey)
        : null;
      const usageKey = prior ? null : (cmd.usageIdempotencyKey ?? cmd.idempotencyKey);
      const usage = usageKey ? await eventByKey(q, cmd.subject, 'USAGE', usageKey) : null;
      const soFar = usage ? await refundedSoFar(q, cmd.subject, usage.sequence) : 0n;
      return decideRefund(state, cmd, { prior, usage, refundedSoFar: soFar }, actor, now);
    },
    signal,
  );
}
