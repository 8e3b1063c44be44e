import { timestampDate, type Timestamp } from '@bufbuild/protobuf/wkt';
import {
  ChainBreakKind,
  Code,
  ConnectError,
  createQuotaClient,
  EventType,
  Period,
  type LedgerEvent,
  type QuotaClient,
  type VerifyLedgerResponse,
} from '../client/index.js';
import { table } from './table.js';

const when = (t: Timestamp | undefined): string =>
  t ? timestampDate(t).toISOString().replace('.000Z', 'Z') : '';
const periodName = (p: Period): string => Period[p] ?? String(p);
const typeName = (t: EventType): string => EventType[t] ?? String(t);

export interface OpsFlags {
  metric?: string;
  period?: string;
  reason?: string;
  all?: boolean;
  follow?: boolean;
  type?: string[];
  subject?: string;
  limit?: string;
  progressEvery?: string;
}

/** The client the CLI uses: QUOTA_URL (default the local service) and QUOTA_API_KEY. */
export function cliClient(env: NodeJS.ProcessEnv = process.env): QuotaClient {
  return createQuotaClient(env.QUOTA_URL ?? 'http://127.0.0.1:50051', {
    transport: 'connect',
    apiKey: env.QUOTA_API_KEY,
    // Operator calls such as a reset of every subject can take a while; wait for them.
    timeoutMs: 10 * 60_000,
  });
}

function parsePeriod(p: string | undefined): Period {
  if (!p) return Period.UNSPECIFIED;
  const v = Period[p.toUpperCase() as keyof typeof Period];
  if (v === undefined) throw new Error(`--period must be DAY, WEEK, MONTH or NEVER (got ${p})`);
  return v;
}

export async function status(c: QuotaClient, subject: string, f: OpsFlags): Promise<string> {
  const r = await c.quota.getQuota({ subject, metric: f.metric ?? '' });
  return table(
    ['METRIC', 'PERIOD', 'USED', 'LIMIT', 'REMAINING', 'RESETS AT', 'ZONE', 'DEFAULT'],
    r.quotas.map((q) => [
      q.metric,
      periodName(q.period),
      String(q.used),
      String(q.limit),
      String(q.remaining),
      when(q.periodEnd) || 'never',
      q.timeZone,
      q.isDefault ? 'yes' : '',
    ]),
  );
}

export async function reset(
  c: QuotaClient,
  subject: string | undefined,
  f: OpsFlags,
): Promise<string> {
  if (!f.reason) throw new Error('reset needs --reason (it is recorded in the ledger)');
  if (!subject && !f.all) throw new Error('reset needs a SUBJECT, or --all for every subject');
  const r = await c.admin.resetQuota({
    subject: subject ?? '',
    allSubjects: Boolean(f.all),
    metric: f.metric ?? '',
    period: parsePeriod(f.period),
    reason: f.reason,
  });
  return (
    `${r.eventsAppended} event(s) appended\n` +
    table(
      ['SUBJECT', 'METRIC', 'PERIOD', 'USED', 'LIMIT'],
      r.quotas.map((q) => [
        q.subject,
        q.metric,
        periodName(q.period),
        String(q.used),
        String(q.limit),
      ]),
    )
  );
}

const eventRow = (e: LedgerEvent): string[] => [
  String(e.position),
  when(e.recordedAt),
  e.subject,
  typeName(e.type),
  e.metric,
  e.amount ? String(e.amount) : '',
  e.period ? periodName(e.period) : '',
  e.actor,
  e.reason,
];
const EVENT_HEADER = [
  'POSITION',
  'RECORDED',
  'SUBJECT',
  'TYPE',
  'METRIC',
  'AMOUNT',
  'PERIOD',
  'ACTOR',
  'REASON',
];

function eventFilter(f: OpsFlags) {
  const types = (f.type ?? []).map((t) => {
    const v = EventType[t.toUpperCase() as keyof typeof EventType];
    if (v === undefined) throw new Error(`--type ${t} is not an event type`);
    return v;
  });
  return { subject: f.subject ?? '', metric: f.metric ?? '', types };
}

/** The newest events (oldest first), or with follow, every new one as it is written. */
export async function events(
  c: QuotaClient,
  f: OpsFlags,
  write: (text: string) => void,
  signal?: AbortSignal,
): Promise<void> {
  const filter = eventFilter(f);
  const limit = Number(f.limit ?? 20);
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
    throw new Error('--limit must be 1-1000');
  // The newest `limit` events in one call, shown oldest first.
  const newest = await c.admin.listEvents({ ...filter, pageSize: limit, newestFirst: true });
  const last = [...newest.events].reverse();
  write(table(EVENT_HEADER, last.map(eventRow)) + '\n');
  if (!f.follow) return;
  // The newest events shown are ones the feed has handed out already, so streaming the feed
  // from the last of them misses nothing still in flight. Feed order is by transaction, so
  // an event shown above (a lower position of a later transaction) can come again: skip it.
  const shown = new Set(last.map((e) => e.position));
  let afterPosition = last.at(-1)?.position ?? 0n;
  while (!signal?.aborted) {
    try {
      // No deadline: the stream stays open; heartbeats keep idle proxies from closing it.
      const stream = c.admin.streamEvents({ ...filter, afterPosition }, { signal, timeoutMs: 0 });
      for await (const m of stream) {
        if (m.item.case !== 'event') continue;
        const e = m.item.value;
        afterPosition = e.position;
        if (!shown.delete(e.position)) write(eventRow(e).join('  ') + '\n');
      }
    } catch (err) {
      if (signal?.aborted) return;
      // The service restarted or the connection dropped: resume after the last event printed.
      if (!(err instanceof ConnectError) || err.code !== Code.Unavailable) throw err;
      await new Promise((r) => setTimeout(r, 1_000));
    }
  }
}

export async function runs(c: QuotaClient, f: OpsFlags): Promise<string> {
  const r = await c.admin.listResetRuns({ pageSize: Number(f.limit ?? 20) });
  return table(
    ['ID', 'STARTED', 'FINISHED', 'TRIGGER', 'REPLICA', 'ATTEMPT', 'OUTCOME', 'ROLLED', 'ERROR'],
    r.runs.map((x) => [
      String(x.id),
      when(x.startedAt),
      when(x.finishedAt),
      x.trigger,
      x.replicaId,
      String(x.attempt),
      x.outcome,
      String(x.countersRolled),
      x.error,
    ]),
  );
}

/** The reset scheduler of the replica that answers, and the last run of any replica. */
export async function schedulerStatus(c: QuotaClient): Promise<string> {
  const r = await c.admin.getResetStatus({});
  const last = r.lastRun;
  const lines: [string, string][] = [
    ['scheduled resets', r.enabled ? 'enabled' : 'disabled (QUOTA_RESET_ENABLED=false)'],
    ['schedule', `${r.schedule} (${r.timeZone})`],
    ['next run', when(r.nextRunTime) || '-'],
    ['running', r.running ? `yes, since ${when(r.runningSince)}` : 'no'],
    [
      'last run',
      last
        ? `${last.outcome} at ${when(last.finishedAt)} (${last.trigger}, replica ${last.replicaId}, ${last.countersRolled} rolled)${last.error ? `: ${last.error}` : ''}`
        : 'none yet',
    ],
    ['replica', r.replicaId],
  ];
  return lines.map(([k, v]) => `${k.padEnd(17)}${v}`).join('\n');
}

/** Compares every counter with the ledger's fold; with repair, rewrites those that differ. */
export async function verify(
  c: QuotaClient,
  f: OpsFlags,
  repair: boolean,
): Promise<{ text: string; clean: boolean }> {
  const r = await c.admin.verifyProjection({ subject: f.subject ?? '', repair });
  const count = (s?: { used: bigint; periodStart?: Timestamp }) =>
    s ? `${s.used} from ${when(s.periodStart)}` : 'none';
  const head = `${r.subjectsChecked} subject(s) checked, ${r.differencesFound} difference(s)${repair ? `, ${r.repaired} counter(s) rebuilt from the ledger` : ''}`;
  if (r.differences.length === 0) return { text: head, clean: true };
  const rows = r.differences.map((d) => [
    d.subject,
    d.metric,
    periodName(d.period),
    count(d.ledger),
    count(d.projection),
    d.positions.join(' '),
  ]);
  return {
    text:
      head +
      '\n' +
      table(['SUBJECT', 'METRIC', 'PERIOD', 'LEDGER', 'COUNTER', 'EVENT POSITIONS'], rows),
    clean: repair,
  };
}

/**
 * Recomputes the ledger's hash chains; every break with subject, sequence and position. Over
 * the stream, so a long run can show progress (`progress`, when given, gets one line per
 * message) and needs no deadline.
 */
export async function verifyLedger(
  c: QuotaClient,
  f: OpsFlags,
  progress?: (line: string) => void,
): Promise<{ text: string; clean: boolean }> {
  const every = Number(f.progressEvery ?? 0);
  if (!Number.isInteger(every) || every < 0 || every > 1_000_000)
    throw new Error('--progress-every must be 1-1000000');
  const stream = c.admin.verifyLedgerStream(
    { subject: f.subject ?? '', progressEverySubjects: every },
    { timeoutMs: 0 },
  );
  let r: VerifyLedgerResponse | undefined;
  for await (const m of stream) {
    if (m.item.case === 'result') r = m.item.value;
    else if (m.item.case === 'progress' && progress) {
      const p = m.item.value;
      progress(
        `verifying: ${p.subjectsChecked} subject(s), ${p.eventsChecked} event(s), ${p.breaksFound} break(s) so far; at ${p.subject}`,
      );
    }
  }
  if (!r) throw new Error('the service ended the verification without a result');
  const checkpoint = r.checkpointId
    ? `, against checkpoint ${r.checkpointId} of ${when(r.checkpointTime)}`
    : f.subject
      ? ''
      : ', no checkpoint yet';
  const head = `${r.subjectsChecked} subject(s), ${r.eventsChecked} event(s) checked${checkpoint}: ${r.breaks.length === 0 ? 'the chains hold' : `${r.breaks.length}${r.truncated ? '+' : ''} break(s)`}`;
  if (r.breaks.length === 0) return { text: head, clean: true };
  const rows = r.breaks.map((b) => [
    (ChainBreakKind[b.kind] ?? String(b.kind)).replace(/_/g, ' ').toLowerCase(),
    b.subject,
    b.sequence ? String(b.sequence) : '',
    b.position ? String(b.position) : '',
    b.detail,
  ]);
  return {
    text: head + '\n' + table(['BREAK', 'SUBJECT', 'SEQUENCE', 'POSITION', 'DETAIL'], rows),
    clean: false,
  };
}
