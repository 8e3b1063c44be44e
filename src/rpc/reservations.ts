import { create } from '@bufbuild/protobuf';
import { durationFromMs, type Duration } from '@bufbuild/protobuf/wkt';
import { invalid } from '../domain/errors.js';
import {
  checkAmount,
  checkAttributes,
  checkIdempotencyKey,
  checkMetric,
  checkReason,
  checkReservationId,
  checkSubject,
  checkTtlMs,
} from './validate.js';
import {
  CancelReservationResponseSchema,
  CommitReservationResponseSchema,
  ReserveResponseSchema,
  type QuotaService,
} from '../gen/quota/v1/quota_service_pb.js';
import type { LedgerDeps } from '../ledger/commands.js';
import { cancelReservation, commitReservation, reserve } from '../ledger/reservation.js';
import type { Metrics } from '../metrics.js';
import { allowSubject, type ServiceHandlers } from './context.js';
import { statusToProto, ts } from './convert.js';

/** The reservation methods of quota.v1.QuotaService, typed from the generated descriptor. */
export type ReservationHandlers = Pick<
  ServiceHandlers<typeof QuotaService>,
  'reserve' | 'commitReservation' | 'cancelReservation'
>;

/** A ttl in milliseconds; unset is null (required, checked by checkTtlMs). */
function ttlMs(d: Duration | undefined): number | null {
  if (!d) return null;
  if (d.nanos < -999_999_999 || d.nanos > 999_999_999) {
    throw invalid('ttl', 'nanos must be between -999999999 and 999999999');
  }
  // Far outside 1 s - 24 h either way; kept out of Number to avoid precision questions.
  if (d.seconds > 86_400n || d.seconds < 0n) return Number.POSITIVE_INFINITY;
  return Number(d.seconds) * 1000 + d.nanos / 1e6;
}

export function reservationHandlers(deps: LedgerDeps, metrics?: Metrics): ReservationHandlers {
  return {
    async reserve(req, ctx) {
      const cmd = {
        subject: checkSubject(req.subject),
        metric: checkMetric(req.metric),
        amount: checkAmount(req.amount),
        ttlMs: checkTtlMs(ttlMs(req.ttl)),
        idempotencyKey: checkIdempotencyKey(req.idempotencyKey),
        attributes: checkAttributes(req.attributes),
      };
      allowSubject(ctx, cmd.subject);
      const r = await reserve(deps, cmd, ctx.actor, ctx.signal);
      const outcome = r.replayed ? 'replayed' : r.allowed ? 'allowed' : 'denied';
      metrics?.reservations.inc({ metric: cmd.metric, outcome });
      const now = deps.clock.now();
      return create(ReserveResponseSchema, {
        allowed: r.allowed,
        reservationId: r.reservationId ?? '',
        expiresAt: r.expiresAt ? ts(r.expiresAt) : undefined,
        quotas: r.quotas.map(statusToProto),
        sequence: r.sequence,
        replayed: r.replayed,
        retryAt: r.retryAt ? ts(r.retryAt) : undefined,
        retryAfter: r.retryAt
          ? durationFromMs(Math.max(0, r.retryAt.getTime() - now.getTime()))
          : undefined,
      });
    },

    async commitReservation(req, ctx) {
      const cmd = {
        subject: checkSubject(req.subject),
        reservationId: checkReservationId(req.reservationId),
        amount: checkAmount(req.amount),
        allowOverrun: req.allowOverrun,
        reason: checkReason(req.reason),
      };
      allowSubject(ctx, cmd.subject);
      const r = await commitReservation(deps, cmd, ctx.actor, ctx.signal);
      if (!r.replayed) metrics?.reservationsSettled.inc({ outcome: 'committed' });
      return create(CommitReservationResponseSchema, {
        quotas: r.quotas.map(statusToProto),
        sequence: r.sequence,
        replayed: r.replayed,
      });
    },

    async cancelReservation(req, ctx) {
      const cmd = {
        subject: checkSubject(req.subject),
        reservationId: checkReservationId(req.reservationId),
        reason: checkReason(req.reason),
      };
      allowSubject(ctx, cmd.subject);
      const r = await cancelReservation(deps, cmd, ctx.actor, ctx.signal);
      if (!r.replayed) metrics?.reservationsSettled.inc({ outcome: 'cancelled' });
      return create(CancelReservationResponseSchema, {
        quotas: r.quotas.map(statusToProto),
        sequence: r.sequence,
        replayed: r.replayed,
      });
    },
  };
}
