import { create } from '@bufbuild/protobuf';
import { timestampMs } from '@bufbuild/protobuf/wkt';
import { status } from '@grpc/grpc-js';
import { QuotaError } from '../../src/domain/errors.js';
import type { QuotaView } from '../../src/domain/quota.js';
import {
  ConsumeBatchRequestSchema,
  type ConsumeResponse,
} from '../../src/gen/quota/v1/quota_service_pb.js';
import {
  ConsumeMode,
  Period as ProtoPeriod,
  type QuotaStatus,
} from '../../src/gen/quota/v1/types_pb.js';
import type { ConsumeCommand, LedgerDeps } from '../../src/ledger/commands.js';
import { consume, type ConsumeResult } from '../../src/ledger/consume.js';
import { ConsumeGroupCommitter } from '../../src/batching/group-commit.js';
import { quotaServiceHandlers } from '../../src/rpc/quota-service.js';
import type { ConsumeAnswer, Outcome, Period, View } from './model.js';

// The three ways the service applies consumes, each turned into the model's vocabulary, so a
// test can hold any of them to the model call by call.

export type ConsumePath = 'unbatched' | 'group commit' | 'ConsumeBatch';
export const CONSUME_PATHS: readonly ConsumePath[] = ['unbatched', 'group commit', 'ConsumeBatch'];

/** Applies consumes given together (in order); one outcome per command. */
export type ConsumeDriver = (cmds: ConsumeCommand[]) => Promise<Outcome<ConsumeAnswer>[]>;

export const viewOfDomain = (v: QuotaView): View => ({
  period: v.period as Period,
  limit: v.limit,
  used: v.used,
  exceeded: v.exceeded,
  start: v.periodStart.getTime(),
  end: v.periodEnd?.getTime() ?? null,
});

const PROTO_PERIODS: Record<number, Period> = {
  [ProtoPeriod.DAY]: 'DAY',
  [ProtoPeriod.WEEK]: 'WEEK',
  [ProtoPeriod.MONTH]: 'MONTH',
  [ProtoPeriod.NEVER]: 'NEVER',
};

const viewOfProto = (q: QuotaStatus): View => ({
  period: PROTO_PERIODS[q.period]!,
  limit: q.limit,
  used: q.used,
  exceeded: q.exceeded,
  start: q.periodStart ? timestampMs(q.periodStart) : NaN,
  end: q.periodEnd ? timestampMs(q.periodEnd) : null,
});

export const answerOfDomain = (r: ConsumeResult): ConsumeAnswer => ({
  allowed: r.allowed,
  recorded: r.recorded,
  replayed: r.replayed,
  quotas: r.quotas.map(viewOfDomain),
});

const answerOfProto = (r: ConsumeResponse): ConsumeAnswer => ({
  allowed: r.allowed,
  recorded: r.recorded,
  replayed: r.replayed,
  quotas: r.quotas.map(viewOfProto),
});

/** An error as the model names it; anything that is not a refusal the model knows is rethrown. */
export const codeOf = (err: unknown): string => {
  if (err instanceof QuotaError) return err.code;
  const code = (err as { code?: unknown }).code;
  const name = typeof code === 'number' ? status[code] : undefined;
  return name ?? `unexpected: ${err instanceof Error ? err.message : String(err)}`;
};

export async function settle<T>(p: Promise<T>): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await p };
  } catch (err) {
    return { ok: false, code: codeOf(err) };
  }
}

export function consumeDriver(path: ConsumePath, deps: LedgerDeps): ConsumeDriver {
  const committer = new ConsumeGroupCommitter(deps);
  const handlers = quotaServiceHandlers(deps, { consumer: committer });
  switch (path) {
    case 'unbatched':
      return async (cmds) => {
        const out: Outcome<ConsumeAnswer>[] = [];
        for (const c of cmds) {
          out.push(await settle(consume(deps, c, 'model').then(answerOfDomain)));
        }
        return out;
      };
    case 'group commit':
      // Submitted in the same turn of the event loop: they share a flush.
      return (cmds) =>
        Promise.all(cmds.map((c) => settle(committer.submit(c, 'model').then(answerOfDomain))));
    case 'ConsumeBatch':
      return async (cmds) => {
        const req = create(ConsumeBatchRequestSchema, {
          items: cmds.map((c) => ({
            subject: c.subject,
            metric: c.metric,
            amount: c.amount,
            idempotencyKey: c.idempotencyKey ?? '',
            mode: ConsumeMode[c.mode],
          })),
        });
        const res = await handlers.consumeBatch(req, {
          actor: 'model',
          role: null,
          scope: null,
          signal: new AbortController().signal,
        });
        return res.results.map((r) =>
          r.result.case === 'response'
            ? { ok: true as const, value: answerOfProto(r.result.value) }
            : { ok: false as const, code: status[r.result.value?.code ?? 2] ?? 'UNKNOWN' },
        );
      };
  }
}
