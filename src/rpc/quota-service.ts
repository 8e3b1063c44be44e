import { create } from '@bufbuild/protobuf';
import { durationFromMs } from '@bufbuild/protobuf/wkt';
import type { CallSignal } from '../cancellation.js';
import { invalid, QuotaError } from '../domain/errors.js';
import {
  checkAmount,
  checkAttributes,
  checkIdempotencyKey,
  checkMetric,
  checkOptionalMetric,
  checkReason,
  checkSubject,
} from './validate.js';
import {
  ItemErrorSchema,
  RefundResponseSchema,
  type ConsumeRequest,
  type ConsumeResponse,
  type QuotaService,
} from '../gen/quota/v1/quota_service_pb.js';
import type { LedgerDeps } from '../ledger/commands.js';
import type { ConsumeCommand } from '../ledger/commands.js';
import type { ConsumeResult } from '../ledger/consume.js';
import { getQuota, getQuotaAsOf } from '../ledger/read.js';
import { refund } from '../ledger/refund.js';
import type { Metrics } from '../metrics.js';
import { allowSubject, isAdmin, type ServiceHandlers } from './context.js';
import { toFailure } from './errors.js';
import { reservationHandlers } from './reservations.js';
import { dateFromProto, modeFromProto, periodAmountToProto, statusToProto, ts } from './convert.js';

/** Every method of quota.v1.QuotaService, typed from the generated descriptor. */
export type QuotaServiceHandlers = ServiceHandlers<typeof QuotaService>;

/** Applies consumes: the group committer in a server, or anything with its shape. */
export interface Consumer {
  submit(cmd: ConsumeCommand, actor: string, signal?: CallSignal): Promise<ConsumeResult>;
  /** Settles when every call has, each with its own outcome, in the order given. */
  submitAll(
    cmds: readonly ConsumeCommand[],
    actor: string,
    signal?: CallSignal,
  ): Promise<PromiseSettledResult<ConsumeResult>[]>;
}

export interface QuotaServiceOptions {
  consumer: Consumer;
  metrics?: Metrics;
  /** Told about batch items that failed for a reason of ours (INTERNAL), which the caller sees only as a code. */
  onInternalError?: (err: unknown) => void;
}

/** The most items one ConsumeBatch may carry. */
export const MAX_BATCH_ITEMS = 1000;

const consumeCommand = (req: ConsumeRequest): ConsumeCommand => ({
  subject: checkSubject(req.subject),
  metric: checkMetric(req.metric),
  amount: checkAmount(req.amount),
  idempotencyKey: checkIdempotencyKey(req.idempotencyKey),
  mode: modeFromProto(req.mode),
  attributes: checkAttributes(req.attributes),
});

export function quotaServiceHandlers(
  deps: LedgerDeps,
  o: QuotaServiceOptions,
): QuotaServiceHandlers {
  const { consumer, metrics } = o;
  const answer = (cmd: ConsumeCommand, r: ConsumeResult): ConsumeResponse => {
    const outcome = r.replayed ? 'replayed' : r.allowed ? 'allowed' : 'denied';
    metrics?.consumes.inc(cmd.metric, cmd.mode, outcome);
    const now = deps.clock.now();
    // A plain object rather than `create`, as statusToProto: this is the hottest answer.
    return {
      $typeName: 'quota.v1.ConsumeResponse',
      allowed: r.allowed,
      recorded: r.recorded,
      replayed: r.replayed,
      sequence: r.sequence,
      quotas: r.quotas.map(statusToProto),
      retryAt: r.retryAt ? ts(r.retryAt) : undefined,
      retryAfter: r.retryAt
        ? durationFromMs(Math.max(0, r.retryAt.getTime() - now.getTime()))
        : undefined,
    };
  };
  return {
    ...reservationHandlers(deps, metrics),
    async consume(req, ctx) {
      const cmd = consumeCommand(req);
      allowSubject(ctx, cmd.subject);
      return answer(cmd, await consumer.submit(cmd, ctx.actor, ctx.signal));
    },

    async consumeBatch(req, ctx) {
      if (req.items.length === 0 || req.items.length > MAX_BATCH_ITEMS) {
        throw invalid('items', `must hold 1 to ${MAX_BATCH_ITEMS} usages, not ${req.items.length}`);
      }
      // Valid items are queued together, in order, so they share transactions; each settles
      // on its own.
      const cmds: (ConsumeCommand | QuotaError)[] = req.items.map((item) => {
        try {
          const cmd = consumeCommand(item);
          allowSubject(ctx, cmd.subject);
          return cmd;
        } catch (err) {
          if (err instanceof QuotaError) return err;
          throw err;
        }
      });
      const valid = cmds.filter((c): c is ConsumeCommand => !(c instanceof QuotaError));
      // One wait for all of them (see submitAll), not an async function per item.
      const settled = await consumer.submitAll(valid, ctx.actor, ctx.signal);
      let next = 0;
      const results = cmds.map((cmd, i) => {
        let reason: unknown = cmd;
        if (!(cmd instanceof QuotaError)) {
          const s = settled[next++]!;
          if (s.status === 'fulfilled') {
            return { case: 'response' as const, value: answer(cmd, s.value) };
          }
          reason = s.reason;
        }
        const f = toFailure(reason);
        if (f.internal) o.onInternalError?.(f.internal);
        const message = `items[${i}]: ${f.message}`;
        return {
          case: 'error' as const,
          value: create(ItemErrorSchema, { code: f.code, message }),
        };
      });
      // Plain message objects, as for a single Consume: create() per item showed in profiles.
      return {
        $typeName: 'quota.v1.ConsumeBatchResponse',
        results: results.map((result) => ({ $typeName: 'quota.v1.ConsumeBatchResult', result })),
      };
    },

    async refund(req, ctx) {
      const cmd = {
        subject: checkSubject(req.subject),
        metric: checkMetric(req.metric),
        amount: checkAmount(req.amount),
        idempotencyKey: checkIdempotencyKey(req.idempotencyKey),
        usageIdempotencyKey: checkIdempotencyKey(req.usageIdempotencyKey, 'usage_idempotency_key'),
        reason: checkReason(req.reason),
        unnamedAllowed: isAdmin(ctx),
      };
      allowSubject(ctx, cmd.subject);
      const r = await refund(deps, cmd, ctx.actor, ctx.signal);
      return create(RefundResponseSchema, {
        quotas: r.quotas.map(statusToProto),
        sequence: r.sequence,
        replayed: r.replayed,
        credited: r.credited.map(periodAmountToProto),
      });
    },

    async getQuota(req, ctx) {
      const subject = checkSubject(req.subject);
      allowSubject(ctx, subject);
      const metric = checkOptionalMetric(req.metric);
      const asOf = dateFromProto(req.asOf, 'as_of');
      if (asOf && asOf.getTime() > deps.clock.now().getTime()) {
        throw invalid('as_of', 'is in the future; the ledger cannot answer for it yet');
      }
      const views = asOf
        ? await getQuotaAsOf(deps, subject, metric, asOf)
        : await getQuota(deps, subject, metric);
      return { $typeName: 'quota.v1.GetQuotaResponse', quotas: views.map(statusToProto) };
    },
  };
}
