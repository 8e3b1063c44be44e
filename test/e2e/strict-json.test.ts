import { connect as h2connect } from 'node:http2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Period } from '../../src/gen/quota/v1/types_pb.js';
import { startTestServer, type TestServer } from '../support/server.js';

// Proto3 JSON is strict here: a typo in a field or enum name is INVALID_ARGUMENT naming it,
// and nothing is recorded. (Dropping it would be worse than refusing: "CONSUME_MODE_DRYRUN"
// would charge, "PERIOD_DAYS" in ResetQuota would reset every period.)

const Q = '/quota.v1.QuotaService/';
const A = '/quota.v1.QuotaAdminService/';
const consume = { subject: 'acme', metric: 'api_calls', amount: '1' };
const quota = { subject: 'acme', metric: 'api_calls', period: 'PERIOD_DAY', reason: 'r' };

/** [method, body, the path the error must start with] */
const CORPUS: [string, object, string][] = [
  [`${Q}Consume`, { ...consume, mode: 'CONSUME_MODE_DRYRUN' }, 'mode'],
  [`${Q}Consume`, { ...consume, mode: 'consume_mode_dry_run' }, 'mode'],
  [`${Q}Consume`, { ...consume, mode: 'DRY_RUN' }, 'mode'],
  [`${Q}Consume`, { subject: 'acme', metrc: 'api_calls', amount: '1' }, 'metrc'],
  [`${Q}Consume`, { ...consume, idempotencyKy: 'k-1' }, 'idempotencyKy'],
  [`${Q}Consume`, { ...consume, IdempotencyKey: 'k-1' }, 'IdempotencyKey'],
  [`${Q}Consume`, { ...consume, attribute: { a: 'b' } }, 'attribute'],
  [
    `${Q}ConsumeBatch`,
    { items: [consume, { ...consume, mode: 'CONSUME_MODE_RECORDS' }] },
    'items[1].mode',
  ],
  [`${Q}ConsumeBatch`, { items: [{ ...consume, amout: '1' }] }, 'items[0].amout'],
  [`${Q}ConsumeBatch`, { item: [consume] }, 'item'],
  [`${Q}Refund`, { ...consume, usageIdempotencyKy: 'k' }, 'usageIdempotencyKy'],
  [`${Q}Refund`, { ...consume, reson: 'oops' }, 'reson'],
  [`${A}SetQuota`, { ...quota, period: 'PERIOD_DAILY', limit: '5' }, 'period'],
  [`${A}SetQuota`, { ...quota, period: 'period_day', limit: '5' }, 'period'],
  [`${A}SetQuota`, { ...quota, limit: '5', timezone: 'Europe/Paris' }, 'timezone'],
  [`${A}SetQuota`, { ...quota, limit: '5', anchorDays: 3 }, 'anchorDays'],
  [`${A}SetQuota`, { ...quota, limt: '5' }, 'limt'],
  [`${A}DeleteQuota`, { ...quota, period: 'PERIOD_MONTHS' }, 'period'],
  [`${A}DeleteQuota`, { ...quota, metirc: 'api_calls' }, 'metirc'],
  [`${A}ResetQuota`, { ...quota, period: 'PERIOD_DAYS' }, 'period'],
  [`${A}ResetQuota`, { metric: 'api_calls', allSubject: true, reason: 'r' }, 'allSubject'],
  [`${A}TriggerResetSweep`, { dryRun: true }, 'dryRun'],
  [`${A}VerifyProjection`, { subject: 'acme', repiar: true }, 'repiar'],
];

let s: TestServer;

/** Everything a write could change. */
async function ledgerState(): Promise<string> {
  const q = async (sql: string) =>
    JSON.stringify((await s.database.db.query(sql)).rows, (_k, v: unknown) =>
      typeof v === 'bigint' ? v.toString() : v,
    );
  return [
    await q('SELECT subject, sequence, type FROM ledger_events ORDER BY position'),
    await q('SELECT subject, metric, period, used, period_start FROM counters ORDER BY 1, 2, 3'),
    await q('SELECT * FROM quotas ORDER BY 1, 2, 3'),
    await q('SELECT count(*) FROM reset_runs'),
  ].join('\n');
}

beforeAll(async () => {
  s = await startTestServer();
  await s.connect.admin.setQuota({
    subject: 'acme',
    metric: 'api_calls',
    period: Period.DAY,
    limit: 9n,
  });
  await s.connect.quota.consume({
    subject: 'acme',
    metric: 'api_calls',
    amount: 2n,
    idempotencyKey: 'u-1',
  });
});
afterAll(() => s.close());

describe('Connect JSON is strict', () => {
  it('refuses every typo over HTTP/1.1 with INVALID_ARGUMENT naming it; nothing recorded', async () => {
    const before = await ledgerState();
    for (const [path, body, field] of CORPUS) {
      const res = await fetch(`${s.baseUrl}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      const answer = (await res.json()) as { code: string; message: string };
      expect([res.status, answer.code], `${path} ${JSON.stringify(body)}`).toEqual([
        400,
        'invalid_argument',
      ]);
      expect(answer.message.startsWith(`${field}: `), answer.message).toBe(true);
    }
    expect(await ledgerState()).toBe(before);
  });

  it('refuses them over HTTP/2 as well', async () => {
    const before = await ledgerState();
    const session = h2connect(s.baseUrl);
    try {
      for (const [path, body, field] of CORPUS) {
        const answer = await new Promise<string>((ok, fail) => {
          const req = session.request({
            ':method': 'POST',
            ':path': path,
            'content-type': 'application/json',
          });
          let text = '';
          req.on('data', (c: Buffer) => (text += c.toString()));
          req.on('end', () => ok(text));
          req.on('error', fail);
          req.end(JSON.stringify(body));
        });
        expect(JSON.parse(answer)).toMatchObject({
          code: 'invalid_argument',
          message: expect.stringMatching(new RegExp(`^${field.replace(/[[\]]/g, '\\$&')}: `)),
        });
      }
    } finally {
      session.close();
    }
    expect(await ledgerState()).toBe(before);
  });

  it('refuses typos in Connect GET requests too', async () => {
    const get = async (path: string, message: object) => {
      const url = `${s.baseUrl}${path}?connect=v1&encoding=json&message=${encodeURIComponent(JSON.stringify(message))}`;
      const res = await fetch(url);
      return [res.status, ((await res.json()) as { message: string }).message];
    };
    expect(await get(`${Q}GetQuota`, { subjet: 'acme' })).toEqual([
      400,
      expect.stringMatching(/^subjet: unknown field/),
    ]);
    expect(await get(`${A}ListEvents`, { subject: 'acme', types: ['EVENT_TYPE_USAGES'] })).toEqual([
      400,
      expect.stringMatching(/^types\[0\]: unknown quota.v1.EventType value "EVENT_TYPE_USAGES"/),
    ]);
  });

  it('still takes what is right: both JSON names, enum numbers, and the real names', async () => {
    const before = await ledgerState();
    const res = await fetch(`${s.baseUrl}${Q}Consume`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        ...consume,
        idempotency_key: 'u-2',
        mode: 'CONSUME_MODE_RECORD',
        attributes: { a: 'b' },
      }),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({
      allowed: true,
      recorded: true,
      quotas: [{ used: '3' }],
    });
    const dry = await fetch(`${s.baseUrl}${Q}Consume`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ...consume, idempotencyKey: 'u-3', mode: 3 }),
    });
    expect(await dry.json()).toMatchObject({ allowed: true, quotas: [{ used: '3' }] });
    expect(await ledgerState()).not.toBe(before);
  });
});
