import { create } from '@bufbuild/protobuf';
import { durationFromMs } from '@bufbuild/protobuf/wkt';
import { invalid } from '../domain/errors.js';
import {
  checkAmount,
  checkAttributes,
  checkIdempotencyKey,
  checkMetric,
  checkOptionalMetric,
  checkReason,
  checkSubject,
} from '../domain/validate.js';
import {
  ConsumeResponseSchema,
  GetQuotaResponseSchema,
  RefundResponseSchema,
  type ConsumeRequest,
  type ConsumeResponse,
  type GetQuotaRequest,
  type GetQuotaResponse,
  type RefundRequest,
  type RefundResponse,
} from '../gen/quota/v1/quota_service_pb.js';
import type { LedgerDeps } from '../ledger/commands.js';
import { consume } from '../ledger/consume.js';
import { getQuota, getQuotaAsOf } from '../ledger/read.js';
import { refund } from '../ledger/refund.js';
import type { Metrics } from '../metrics.js';
import type { Handler } from './context.js';
import { dateFromProto, modeFromProto, periodAmountToProto, statusToProto, ts } from './convert.js';

export interface QuotaServiceHandlers {
  consume: Handler<ConsumeRequest, ConsumeResponse>;
  refund: Handler<RefundRequest, RefundResponse>;
  getQuota: Handler<GetQuotaRequest, GetQuotaResponse>;
}

export function quotaServiceHandlers(deps: LedgerDeps, metrics?: Metrics): QuotaServiceHandlers {
  return {
    async consume(req, ctx) {
      const cmd = {
        subject: checkSubject(req.subject),
        metric: checkMetric(req.metric),
        amount: checkAmount(req.amount),
        idempotencyKey: checkIdempotencyKey(req.idempotencyKey),
        mode: modeFromProto(req.mode),
        attributes: checkAttributes(req.attributes),
      };
      const r = await consume(deps, cmd, ctx.actor, ctx.signal);
      const outcome = r.replayed ? 'replayed' : r.allowed ? 'allowed' : 'denied';
      metrics?.consumes.inc({ metric: cmd.metric, mode: cmd.mode, outcome });
      const now = deps.clock.now();
      return create(ConsumeResponseSchema, {
        allowed: r.allowed,
        recorded: r.recorded,
        replayed: r.replayed,
        sequence: r.sequence,
        quotas: r.quotas.map(statusToProto),
        retryAt: r.retryAt ? ts(r.retryAt) : undefined,
        retryAfter: r.retryAt
          ? durationFromMs(Math.max(0, r.retryAt.getTime() - now.getTime()))
          : undefined,
      });
    },

    async refund(req, ctx) {
      const cmd = {
        subject: checkSubject(req.subject),
        metric: checkMetric(req.metric),
        amount: checkAmount(req.amount),
        idempotencyKey: checkIdempotencyKey(req.idempotencyKey),
        usageIdempotencyKey: checkIdempotencyKey(req.usageIdempotencyKey, 'usage_idempotency_key'),
        reason: checkReason(req.reason),
      };
      const r = await refund(deps, cmd, ctx.actor, ctx.signal);
      return create(RefundResponseSchema, {
        quotas: r.quotas.map(statusToProto),
        sequence: r.sequence,
        replayed: r.replayed,
        credited: r.credited.map(periodAmountToProto),
      });
    },

    async getQuota(req) {
      const subject = checkSubject(req.subject);
      const metric = checkOptionalMetric(req.metric);
      const asOf = dateFromProto(req.asOf, 'as_of');
      if (asOf && asOf.getTime() > deps.clock.now().getTime()) {
        throw invalid('as_of', 'is in the future; the ledger cannot answer for it yet');
      }
      const views = asOf
        ? await getQuotaAsOf(deps, subject, metric, asOf)
        : await getQuota(deps, subject, metric);
      return create(GetQuotaResponseSchema, { quotas: views.map(statusToProto) });
    },
  };
}
