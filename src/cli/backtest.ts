import { timestampDate, timestampFromDate, type Timestamp } from '@bufbuild/protobuf/wkt';
import {
  Period,
  type BacktestProgress,
  type BacktestQuotaResponse,
  type QuotaClient,
} from '../client/index.js';
import { table } from './table.js';

export interface BacktestFlags {
  subject?: string;
  quota?: string[];
  from?: string;
  to?: string;
}

const when = (t: Timestamp | undefined): string =>
  t ? timestampDate(t).toISOString().replace('.000Z', 'Z') : '';

/** "DAY:100", "MONTH:5000:Europe/Paris:31" -> a proposed quota. */
export function parseProposed(spec: string): {
  period: Period;
  limit: bigint;
  timeZone: string;
  anchorDay: number;
} {
  const [p = '', limit = '', timeZone = '', anchor = '0'] = spec.split(':');
  const period = Period[p.toUpperCase() as keyof typeof Period];
  if (period === undefined || period === Period.UNSPECIFIED) {
    throw new Error(`--quota ${spec}: the period must be DAY, WEEK, MONTH or NEVER`);
  }
  if (!/^\d{1,19}$/.test(limit)) throw new Error(`--quota ${spec}: the limit must be a number`);
  if (!/^\d{1,2}$/.test(anchor)) throw new Error(`--quota ${spec}: the anchor day must be 1-31`);
  return { period, limit: BigInt(limit), timeZone, anchorDay: Number(anchor) };
}

function instant(v: string | undefined, flag: string): Timestamp {
  const d = v ? new Date(v) : null;
  if (!d || Number.isNaN(d.getTime())) throw new Error(`${flag} needs an ISO instant`);
  return timestampFromDate(d);
}

/** One progress line: how many events, how far into the range in time and in the ledger. */
export const progressLine = (p: BacktestProgress): string =>
  `backtest: ${p.eventsScanned} events replayed, ${(p.covered * 100).toFixed(1)}% of the range` +
  ` (up to ${when(p.timeReached)}, position ${p.position})`;

/**
 * npm run quota -- backtest METRIC --quota DAY:100 [--subject S] --from ISO [--to ISO]
 * [--progress]. Uses the stream, so a long range shows how far it got through `onProgress`.
 */
export async function backtest(
  c: QuotaClient,
  metric: string | undefined,
  f: BacktestFlags,
  onProgress?: (line: string) => void,
): Promise<string> {
  if (!metric) throw new Error('backtest needs a METRIC');
  if (!f.quota?.length) throw new Error('backtest needs at least one --quota PERIOD:LIMIT');
  let r: BacktestQuotaResponse | undefined;
  for await (const m of c.admin.backtestQuotaStream(
    {
      metric,
      subject: f.subject ?? '*',
      quotas: f.quota.map(parseProposed),
      startTime: instant(f.from, '--from'),
      endTime: f.to ? instant(f.to, '--to') : timestampFromDate(new Date()),
    },
    // No deadline: a long range may take longer than any fixed one, and it shows its progress.
    { timeoutMs: 0 },
  )) {
    if (m.item.case === 'progress') onProgress?.(progressLine(m.item.value));
    else if (m.item.case === 'result') r = m.item.value;
  }
  if (!r) throw new Error('the backtest stream ended without a result');
  const row = (s: NonNullable<typeof r.totals>) => [
    s.subject,
    String(s.callsAllowed),
    String(s.amountAllowed),
    String(s.callsRefused),
    String(s.amountRefused),
    when(s.firstRefusedAt),
    s.periods.length
      ? String(s.periods.reduce((m, p) => (p.peakUsed > m ? p.peakUsed : m), 0n))
      : '',
  ];
  const rows = r.subjects.map(row);
  if (r.totals) rows.push(row(r.totals));
  return [
    table(
      [
        'SUBJECT',
        'CALLS OK',
        'AMOUNT OK',
        'CALLS REFUSED',
        'AMOUNT REFUSED',
        'FIRST REFUSED',
        'PEAK',
      ],
      rows,
    ),
    `${r.eventsScanned} events replayed. Limits of this answer:`,
    ...r.limits.map((l) => `  - ${l}`),
  ].join('\n');
}
