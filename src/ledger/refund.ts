import { refundCredits } from '../domain/consume.js';
import { invalid, QuotaError } from '../domain/errors.js';
import { newEvent, type Effect, type StoredEvent } from '../domain/events.js';
import { viewOf, type LiveQuota, type QuotaView } from '../domain/quota.js';
import type { LedgerDeps, RefundCommand } from './commands.js';
import { noQuota } from './consume.js';
import { inTransaction } from './db.js';
import { SubjectWriter } from './subject-writer.js';

export interface RefundResult {
  quotas: QuotaView[];
  sequence: bigint;
  replayed: boolean;
  credited: Effect[];
}

/** Effects store what the counter lost; callers are told what they got back. */
const asCredits = (effects: Effect[]): Effect[] =>
  effects.map((fx) => ({ ...fx, delta: -fx.delta }));

async function refundedSoFar(w: SubjectWriter, usageSequence: bigint): Promise<bigint> {
  const rows = await w.tx.query<{ total: bigint }>(
    `SELECT coalesce(sum(amount), 0)::bigint AS total FROM ledger_events
      WHERE subject = $1 AND type = 'REFUND' AND data->>'refundedSequence' = $2`,
    [w.subject, usageSequence.toString()],
  );
  return rows.rows[0]?.total ?? 0n;
}

/** The usage a refund gives back, if it names one (see RefundRequest in the proto). */
async function referencedUsage(w: SubjectWriter, cmd: RefundCommand): Promise<StoredEvent | null> {
  if (cmd.usageIdempotencyKey) {
    const usage = await w.findByKey('USAGE', cmd.usageIdempotencyKey);
    if (!usage) {
      throw new QuotaError(
        'NOT_FOUND',
        `usage_idempotency_key: subject "${cmd.subject}" has no usage with key "${cmd.usageIdempotencyKey}"`,
      );
    }
    return usage;
  }
  return cmd.idempotencyKey ? w.findByKey('USAGE', cmd.idempotencyKey) : null;
}

export async function refund(
  deps: LedgerDeps,
  cmd: RefundCommand,
  actor: string,
  signal?: AbortSignal,
): Promise<RefundResult> {
  return inTransaction(
    deps.db,
    async (tx) => {
      const w = await SubjectWriter.open(tx, cmd.subject);
      if (cmd.idempotencyKey) {
        const prior = await w.findByKey('REFUND', cmd.idempotencyKey);
        if (prior) {
          if (prior.metric !== cmd.metric || prior.amount !== cmd.amount) {
            throw new QuotaError(
              'ALREADY_EXISTS',
              `idempotency_key: "${cmd.idempotencyKey}" was already used by this subject for a refund of ${prior.amount} of "${prior.metric}"`,
            );
          }
          const now = deps.clock.now();
          const live = await w.liveQuotas(cmd.metric, now);
          await w.flush();
          return {
            quotas: live.map((q) => viewOf(q, cmd.subject)),
            sequence: prior.sequence,
            replayed: true,
            credited: asCredits(prior.data.effects ?? []),
          };
        }
      }
      const usage = await referencedUsage(w, cmd);
      if (!usage && cmd.unnamedAllowed === false) {
        throw new QuotaError(
          'PERMISSION_DENIED',
          'a refund that names no usage (usage_idempotency_key, or an idempotency_key a usage carries) needs role admin',
        );
      }
      if (usage) {
        if (usage.metric !== cmd.metric) {
          throw invalid(
            'metric',
            `the usage being refunded was of "${usage.metric}", not "${cmd.metric}"`,
          );
        }
        const left = (usage.amount ?? 0n) - (await refundedSoFar(w, usage.sequence));
        if (cmd.amount > left) {
          throw new QuotaError(
            'FAILED_PRECONDITION',
            `amount: ${cmd.amount} is more than the ${left} left to refund of usage sequence ${usage.sequence}`,
          );
        }
      }
      const now = deps.clock.now();
      const live = await w.liveQuotas(cmd.metric, now);
      if (live.length === 0 && !usage) throw noQuota(cmd.subject, cmd.metric);

      // Only periods still current are credited: a refund of an ended period's usage is recorded
      // but cannot change a counter that has moved on.
      const charged = (q: LiveQuota): boolean =>
        !usage ||
        (usage.data.effects ?? []).some(
          (fx) =>
            fx.period === q.def.period &&
            fx.periodStart.getTime() === q.counter.periodStart.getTime(),
        );
      const targets = live.filter((q) => q.stored && charged(q));
      const credits = refundCredits(
        targets.map((q) => q.counter.used),
        cmd.amount,
      );
      const effects: Effect[] = targets
        .map((q, i) => ({
          period: q.def.period,
          periodStart: q.counter.periodStart,
          periodEnd: q.counter.periodEnd,
          delta: -credits[i]!,
        }))
        .filter((fx) => fx.delta !== 0n);
      const sequence = w.append(
        newEvent({
          type: 'REFUND',
          subject: cmd.subject,
          actor,
          recordedAt: now,
          metric: cmd.metric,
          amount: cmd.amount,
          reason: cmd.reason,
          idempotencyKey: cmd.idempotencyKey,
          data: { effects, ...(usage ? { refundedSequence: usage.sequence } : {}) },
        }),
      );
      for (const [i, q] of targets.entries()) {
        if (credits[i] === 0n) continue;
        q.counter = { ...q.counter, used: q.counter.used - credits[i]!, lastSequence: sequence };
        w.setCounter(q.def.metric, q.def.period, q.counter);
      }
      await w.flush();
      return {
        quotas: live.map((q) => viewOf(q, cmd.subject)),
        sequence,
        replayed: false,
        credited: asCredits(effects),
      };
    },
    signal,
  );
}
