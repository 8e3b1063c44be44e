import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { invalid, QuotaError } from '../domain/errors.js';
import {
  checkAnchorDay,
  checkLimit,
  checkMetric,
  checkOptionalMetric,
  checkPageSize,
  checkReason,
  checkSubject,
  checkTimeZone,
} from './validate.js';
import { INT64_MAX } from '../domain/counter.js';
import {
  DeleteQuotaResponseSchema,
  ListEventsResponseSchema,
  ListQuotasResponseSchema,
  ListResetRunsResponseSchema,
  TriggerResetSweepResponseSchema,
  GetResetStatusResponseSchema,
  ResetQuotaResponseSchema,
  SetQuotaResponseSchema,
  WhoAmIResponseSchema,
  type QuotaAdminService,
} from '../gen/quota/v1/quota_admin_service_pb.js';
import type { LedgerDeps } from '../ledger/commands.js';
import { followEvents, listEventsNewestFirst, type FeedCursor } from '../ledger/list-events.js';
import { lastFinishedAttempt, listAttempts } from '../ledger/reset-runs.js';
import type { ResetScheduler } from '../scheduler/reset-scheduler.js';
import { deleteQuota, listQuotas, setQuota } from '../ledger/quota-admin.js';
import { resetAllSubjects, resetSubject } from '../ledger/reset.js';
import { allowSubject, requireUnscoped, type ServiceHandlers } from './context.js';
import {
  eventToProto,
  optionalPeriodFromProto,
  periodFromProto,
  quotaToProto,
  runToProto,
  statusToProto,
} from './convert.js';
import { backtestHandler, backtestStreamHandler } from './backtest.js';
import { decodePageToken, encodePageToken } from './page-token.js';
import { eventFilterOf, feedCursor, streamEventsHandler } from './event-feed.js';
import { verificationHandlers } from './verification.js';

/**
 * Every method of quota.v1.QuotaAdminService, typed from the generated descriptor. The
 * server-streaming ones (BacktestQuotaStream, VerifyLedgerStream, StreamEvents) resolve to
 * their stream once the request is checked.
 */
export type AdminServiceHandlers = ServiceHandlers<typeof QuotaAdminService>;

const isDecimal = (a: unknown): a is string =>
  typeof a === 'string' && /^\d{1,19}$/.test(a) && BigInt(a) <= INT64_MAX;
const isFeedToken = (a: unknown): a is string =>
  typeof a === 'string' &&
  /^\d{1,20}:\d{1,19}$/.test(a) &&
  a.split(':').every((x) => BigInt(x) <= INT64_MAX * 2n) &&
  BigInt(a.split(':')[1]!) <= INT64_MAX;
const feedToken = (c: FeedCursor): string => `${c.xid}:${c.position}`;
const parseFeedToken = (t: string): FeedCursor => {
  const [xid, position] = t.split(':');
  return { xid: BigInt(xid!), position: BigInt(position!) };
};

const isQuotaKey = (a: unknown): a is [string, string, string] =>
  Array.isArray(a) &&
  a.length === 3 &&
  a.every((x) => typeof x === 'string' && x.length <= 256 && x.isWellFormed() && !x.includes('\0'));

export function adminServiceHandlers(
  deps: LedgerDeps,
  scheduler: ResetScheduler,
  o: { backtestPageSize?: number } = {},
): AdminServiceHandlers {
  return {
    backtestQuota: backtestHandler(deps),
    backtestQuotaStream: backtestStreamHandler(deps, o.backtestPageSize),
    async setQuota(req, ctx) {
      const period = periodFromProto(req.period);
      const cmd = {
        subject: checkSubject(req.subject, 'subject', true),
        metric: checkMetric(req.metric),
        period,
        limit: checkLimit(req.limit),
        timeZone: checkTimeZone(req.timeZone),
        anchorDay: checkAnchorDay(req.anchorDay, period),
        reason: checkReason(req.reason),
      };
      allowSubject(ctx, cmd.subject);
      const r = await setQuota(deps, cmd, ctx.actor, ctx.signal);
      return create(SetQuotaResponseSchema, { quota: quotaToProto(r.quota), sequence: r.sequence });
    },

    async deleteQuota(req, ctx) {
      const cmd = {
        subject: checkSubject(req.subject, 'subject', true),
        metric: checkMetric(req.metric),
        period: periodFromProto(req.period),
        reason: checkReason(req.reason),
      };
      allowSubject(ctx, cmd.subject);
      return create(DeleteQuotaResponseSchema, {
        sequence: await deleteQuota(deps, cmd, ctx.actor, ctx.signal),
      });
    },

    async resetQuota(req, ctx) {
      const cmd = {
        subject: null,
        metric: checkOptionalMetric(req.metric),
        period: optionalPeriodFromProto(req.period),
        reason: checkReason(req.reason),
      };
      let r;
      if (req.allSubjects) {
        if (req.subject !== '') throw invalid('subject', 'must be empty when all_subjects is true');
        requireUnscoped(ctx, 'all_subjects');
        r = await resetAllSubjects(deps, cmd, ctx.actor, ctx.signal);
      } else {
        const subject = checkSubject(req.subject);
        allowSubject(ctx, subject);
        r = await resetSubject(deps, subject, { ...cmd, subject }, ctx.actor, ctx.signal);
      }
      return create(ResetQuotaResponseSchema, {
        quotas: r.quotas.map(statusToProto),
        eventsAppended: BigInt(r.eventsAppended),
      });
    },

    async listQuotas(req, ctx) {
      const filter = {
        subject: req.subject === '' ? null : checkSubject(req.subject, 'subject', true),
        metric: checkOptionalMetric(req.metric),
      };
      if (filter.subject === null) requireUnscoped(ctx, 'a list without a subject');
      else allowSubject(ctx, filter.subject);
      const pageSize = checkPageSize(req.pageSize);
      const after = decodePageToken(req.pageToken, filter, isQuotaKey);
      const page = await listQuotas(deps, filter, pageSize, after);
      return create(ListQuotasResponseSchema, {
        quotas: page.quotas.map(quotaToProto),
        nextPageToken: page.next ? encodePageToken(page.next, filter) : '',
      });
    },

    async listEvents(req, ctx) {
      const filter = eventFilterOf(req, req.newestFirst, ctx);
      const pageSize = checkPageSize(req.pageSize);
      if (req.newestFirst) {
        if (req.afterPosition < 0n) throw invalid('after_position', 'must be zero or more');
        const before = decodePageToken(req.pageToken, filter, isDecimal);
        const page = await listEventsNewestFirst(
          deps,
          filter,
          pageSize,
          before ? BigInt(before) : 0n,
        );
        const last = page.events.at(-1);
        return create(ListEventsResponseSchema, {
          events: page.events.map(eventToProto),
          nextPageToken: page.more && last ? encodePageToken(last.position.toString(), filter) : '',
        });
      }
      // Oldest first is the feed: (xid, position) order, so a token carries both.
      const token = decodePageToken(req.pageToken, filter, isFeedToken);
      const after = token ? parseFeedToken(token) : await feedCursor(deps.db, req.afterPosition);
      const page = await followEvents(deps.db, filter, pageSize, after);
      return create(ListEventsResponseSchema, {
        events: page.events.map(eventToProto),
        nextPageToken: page.more && page.last ? encodePageToken(feedToken(page.last), filter) : '',
      });
    },

    async listResetRuns(req) {
      const pageSize = checkPageSize(req.pageSize);
      const before = decodePageToken(req.pageToken, {}, isDecimal);
      const page = await listAttempts(deps.db, pageSize, before ? BigInt(before) : null);
      const last = page.runs.at(-1);
      return create(ListResetRunsResponseSchema, {
        runs: page.runs.map(runToProto),
        nextPageToken: page.more && last?.id ? encodePageToken(last.id.toString(), {}) : '',
      });
    },

    async triggerResetSweep(_req, ctx) {
      requireUnscoped(ctx, 'a sweep');
      const run = await scheduler.run('manual').catch((err: unknown) => {
        throw new QuotaError(
          'UNAVAILABLE',
          `the sweep could not run: ${err instanceof Error ? err.message : String(err)}`,
        );
      });
      return create(TriggerResetSweepResponseSchema, { run: runToProto(run) });
    },

    async getResetStatus() {
      const st = scheduler.status();
      const last = await lastFinishedAttempt(deps.db);
      return create(GetResetStatusResponseSchema, {
        enabled: st.enabled,
        schedule: st.schedule,
        timeZone: st.timeZone,
        replicaId: st.replicaId,
        nextRunTime: st.nextRunTime ? timestampFromDate(st.nextRunTime) : undefined,
        running: st.runningSince !== null,
        runningSince: st.runningSince ? timestampFromDate(st.runningSince) : undefined,
        lastRun: last ? runToProto(last) : undefined,
      });
    },

    ...verificationHandlers(deps.db),

    streamEvents: streamEventsHandler(deps.db),

    // Role null means authentication is off: the caller may do everything, as an admin may.
    async whoAmI(_req, ctx) {
      return create(WhoAmIResponseSchema, {
        actor: ctx.actor,
        role: ctx.role ?? 'admin',
        authenticated: ctx.role !== null,
        subjects: [...(ctx.scope?.subjects ?? [])],
        subjectPrefix: ctx.scope?.prefix ?? '',
      });
    },
  };
}
