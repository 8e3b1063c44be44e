import { decideConsume } from '../domain/consume.js';
import { QuotaError } from '../domain/errors.js';
import { newEvent, type StoredEvent } from '../domain/events.js';
import type { QuotaView } from '../domain/quota.js';
import type { ConsumeCommand, LedgerDeps } from './commands.js';
import { inTransaction } from './db.js';
import { SubjectWriter } from './subject-writer.js';

export interface ConsumeResult {
  allowed: boolean;
  recorded: boolean;
  replayed: boolean;
  sequence: bigint;
  quotas: QuotaView[];
  retryAt: Date | null;
}

export const noQuota = (subject: string, metric: string): QuotaError =>
  new QuotaError(
    'NOT_FOUND',
    `subject "${subject}" has no quota on metric "${metric}" (neither its own nor a default for "*")`,
  );

function replay(prior: StoredEvent, cmd: ConsumeCommand): ConsumeResult {
  if (prior.metric !== cmd.metric || prior.amount !== cmd.amount) {
    throw new QuotaError(
      'ALREADY_EXISTS',
      `idempotency_key: "${cmd.idempotencyKey}" was already used by this subject for ${prior.amount} of "${prior.metric}" (sequence ${prior.sequence}); use a new key for a different usage`,
    );
  }
  return {
    allowed: !prior.data.overLimit,
    recorded: true,
    replayed: true,
    sequence: prior.sequence,
    quotas: prior.data.quotas ?? [],
    retryAt: null,
  };
}

/** One Consume: roll ended periods, decide against every quota, append, project. */
export async function consume(
  deps: LedgerDeps,
  cmd: ConsumeCommand,
  actor: string,
  signal?: AbortSignal,
): Promise<ConsumeResult> {
  return inTransaction(
    deps.db,
    async (tx) => {
      const w = await SubjectWriter.open(tx, cmd.subject);
      if (cmd.idempotencyKey) {
        const prior = await w.findByKey('USAGE', cmd.idempotencyKey);
        if (prior) return replay(prior, cmd);
      }
      const now = deps.clock.now();
      const live = await w.liveQuotas(cmd.metric, now);
      if (live.length === 0) throw noQuota(cmd.subject, cmd.metric);
      const d = decideConsume(live, cmd.subject, cmd.amount, cmd.mode);
      let sequence = 0n;
      if (d.record) {
        sequence = w.append(
          newEvent({
            type: 'USAGE',
            subject: cmd.subject,
            actor,
            recordedAt: now,
            metric: cmd.metric,
            amount: cmd.amount,
            idempotencyKey: cmd.idempotencyKey,
            attributes: Object.keys(cmd.attributes).length ? cmd.attributes : null,
            data: {
              overLimit: !d.allowed,
              effects: live.map((q) => ({
                period: q.def.period,
                periodStart: q.counter.periodStart,
                periodEnd: q.counter.periodEnd,
                delta: cmd.amount,
              })),
              quotas: d.quotas,
            },
          }),
        );
        for (const q of live) {
          w.setCounter(q.def.metric, q.def.period, {
            ...q.counter,
            used: q.counter.used + cmd.amount,
            lastSequence: sequence,
          });
        }
      }
      await w.flush();
      return {
        allowed: d.allowed,
        recorded: d.record,
        replayed: false,
        sequence,
        quotas: d.quotas,
        retryAt: d.retryAt,
      };
    },
    signal,
  );
}
