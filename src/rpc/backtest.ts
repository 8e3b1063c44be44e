import { create } from '@bufbuild/protobuf';
import { BACKTEST_LIMITS, totalsOf, type SubjectBacktest } from '../domain/backtest.js';
import { invalid } from '../domain/errors.js';
import {
  checkAnchorDay,
  checkLimit,
  checkMetric,
  checkSubject,
  checkTimeZone,
} from './validate.js';
import {
  BacktestPeriodSchema,
  BacktestQuotaResponseSchema,
  BacktestQuotaStreamResponseSchema,
  BacktestSubjectSchema,
  type BacktestQuotaRequest,
  type BacktestQuotaResponse,
  type BacktestQuotaStreamRequest,
  type BacktestSubject,
  type QuotaAdminService,
} from '../gen/quota/v1/quota_admin_service_pb.js';
import {
  backtestPages,
  runBacktest,
  type BacktestQuery,
  type BacktestRun,
} from '../ledger/backtest.js';
import type { LedgerDeps } from '../ledger/commands.js';
import {
  allowSubject,
  requireUnscoped,
  type CallContext,
  type ServiceHandlers,
} from './context.js';
import { dateFromProto, PERIODS, periodFromProto, ts } from './convert.js';

/** The most proposed quotas one backtest takes: a metric has at most one per period. */
const MAX_QUOTAS = 4;

/** The unary and the streaming request carry the same fields. */
type BacktestRequest = Omit<BacktestQuotaRequest | BacktestQuotaStreamRequest, '$typeName'>;

export function backtestQuery(req: BacktestRequest): BacktestQuery {
  const metric = checkMetric(req.metric);
  const subject = checkSubject(req.subject, 'subject', true);
  if (req.quotas.length === 0 || req.quotas.length > MAX_QUOTAS) {
    throw invalid(
      'quotas',
      `must hold 1 to ${MAX_QUOTAS} proposed quotas, not ${req.quotas.length}`,
    );
  }
  const seen = new Set<string>();
  const quotas = req.quotas.map((q, i) => {
    const period = periodFromProto(q.period, `quotas[${i}].period`);
    if (seen.has(period)) throw invalid(`quotas[${i}].period`, `${period} is proposed twice`);
    seen.add(period);
    return {
      period,
      limit: checkLimit(q.limit, `quotas[${i}].limit`),
      timeZone: checkTimeZone(q.timeZone, `quotas[${i}].time_zone`),
      anchorDay: checkAnchorDay(q.anchorDay, period, `quotas[${i}].anchor_day`),
    };
  });
  const start = dateFromProto(req.startTime, 'start_time');
  const end = dateFromProto(req.endTime, 'end_time');
  if (!start) throw invalid('start_time', 'is required');
  if (!end) throw invalid('end_time', 'is required');
  if (end <= start) throw invalid('end_time', 'must be after start_time');
  return { metric, subject, quotas, start, end };
}

const subjectToProto = (r: Omit<SubjectBacktest, 'periods'> & Partial<SubjectBacktest>) =>
  create(BacktestSubjectSchema, {
    subject: r.subject,
    callsAllowed: r.callsAllowed,
    amountAllowed: r.amountAllowed,
    callsRefused: r.callsRefused,
    amountRefused: r.amountRefused,
    firstRefusedAt: r.firstRefusedAt ? ts(r.firstRefusedAt) : undefined,
    periods: (r.periods ?? []).map((p) =>
      create(BacktestPeriodSchema, {
        period: PERIODS[p.period],
        periodStart: ts(p.periodStart),
        periodEnd: p.periodEnd ? ts(p.periodEnd) : undefined,
        peakUsed: p.peak,
        limit: p.limit,
      }),
    ),
  });

/** Checks the request and the key's scope before anything is read. */
function authorizedQuery(req: BacktestRequest, ctx: CallContext): BacktestQuery {
  const q = backtestQuery(req);
  if (q.subject === '*') requireUnscoped(ctx, 'a backtest of every subject');
  else allowSubject(ctx, q.subject);
  return q;
}

function resultToProto(run: BacktestRun): BacktestQuotaResponse {
  const results = run.backtest.result();
  const subjects: BacktestSubject[] = results.map(subjectToProto);
  return create(BacktestQuotaResponseSchema, {
    subjects,
    totals: subjectToProto(totalsOf(results)),
    limits: BACKTEST_LIMITS,
    eventsScanned: BigInt(run.eventsScanned),
  });
}

type AdminHandlers = ServiceHandlers<typeof QuotaAdminService>;

export function backtestHandler(deps: LedgerDeps): AdminHandlers['backtestQuota'] {
  return async (req, ctx) => {
    const q = authorizedQuery(req, ctx);
    return resultToProto(await runBacktest(deps.db, q, { signal: ctx.signal }));
  };
}

/**
 * BacktestQuotaStream: validates and authorizes before the first message (a bad request fails
 * the call), then relays the replay's progress page by page and ends with the result. The
 * transport pulls, so a slow reader pauses the replay instead of queueing messages.
 */
export function backtestStreamHandler(
  deps: LedgerDeps,
  pageSize?: number,
): AdminHandlers['backtestQuotaStream'] {
  return async (req, ctx) => {
    const q = authorizedQuery(req, ctx);
    return (async function* () {
      const pages = backtestPages(deps.db, q, { signal: ctx.signal, pageSize });
      for (;;) {
        const next = await pages.next();
        if (next.done) {
          yield create(BacktestQuotaStreamResponseSchema, {
            item: { case: 'result', value: resultToProto(next.value) },
          });
          return;
        }
        const p = next.value;
        yield create(BacktestQuotaStreamResponseSchema, {
          item: {
            case: 'progress',
            value: {
              eventsScanned: BigInt(p.eventsScanned),
              position: p.position,
              timeReached: ts(p.reached),
              covered: p.covered,
            },
          },
        });
      }
    })();
  };
}
