// Quotas for `npm run bench`, and the checks it runs afterwards: the projection equals the
// fold of the ledger, no counter is over its limit, and a contended limit holds exactly.
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import {
  ConsumeRequestSchema,
  ConsumeResponseSchema,
} from '../src/gen/quota/v1/quota_service_pb.js';
import { systemClock } from '../src/domain/clock.js';
import type { Db } from '../src/ledger/db.js';
import { setQuota } from '../src/ledger/quota-admin.js';
import { verifyProjection } from '../src/ledger/verify.js';
import { channels, unary } from './service.js';

const CONTENDED_LIMIT = 2_000;
const CONTENDED_CALLS = 5_000;

export async function seedQuotas(db: Db): Promise<void> {
  const deps = { db, clock: systemClock };
  const base = { metric: 'requests', timeZone: 'UTC', anchorDay: 0, reason: 'bench' };
  // Every tenant and the hot subject live under the default; the limit is out of reach.
  await setQuota(deps, { ...base, subject: '*', period: 'DAY', limit: 10n ** 15n }, 'bench');
  await setQuota(
    deps,
    { ...base, subject: 'contended', period: 'DAY', limit: BigInt(CONTENDED_LIMIT) },
    'bench',
  );
}

/** Problems found in the service's tables (none is the only good answer). */
export async function checkService(db: Db): Promise<string[]> {
  const problems: string[] = [];
  const v = await verifyProjection(db);
  if (v.differences.length > 0) {
    problems.push(`service: ${v.differences.length} counters differ from the ledger fold`);
  }
  const over = await db.query<{ n: number }>(`
    SELECT count(*)::int AS n FROM counters c
      JOIN LATERAL (SELECT quota_limit FROM quotas q
                     WHERE q.metric = c.metric AND q.period = c.period
                       AND q.subject IN (c.subject, '*')
                     ORDER BY q.subject = '*' LIMIT 1) q ON true
     WHERE c.used > q.quota_limit`);
  if (over.rows[0]!.n > 0) problems.push(`service: ${over.rows[0]!.n} counters over their limit`);
  return problems;
}

/** Many callers race for one small limit: exactly the limit must be granted. */
export async function contentionCheck(
  port: number,
  clients: number,
): Promise<{ summary: string; problems: string[] }> {
  const conns = channels(port, 8);
  const req = Buffer.from(
    toBinary(
      ConsumeRequestSchema,
      create(ConsumeRequestSchema, { subject: 'contended', metric: 'requests', amount: 1n }),
    ),
  );
  let next = 0;
  let allowed = 0;
  let maxUsed = 0n;
  const worker = async (w: number): Promise<void> => {
    while (next++ < CONTENDED_CALLS) {
      const res = fromBinary(
        ConsumeResponseSchema,
        await unary(conns[w % conns.length]!, '/quota.v1.QuotaService/Consume', req),
      );
      if (res.allowed) allowed++;
      const used = res.quotas[0]?.used ?? 0n;
      if (used > maxUsed) maxUsed = used;
    }
  };
  await Promise.all(Array.from({ length: clients }, (_, w) => worker(w)));
  for (const c of conns) c.close();
  const summary = `contention: ${clients} clients, ${CONTENDED_CALLS} calls at a limit of ${CONTENDED_LIMIT}: ${allowed} allowed, highest used seen ${maxUsed}`;
  const problems =
    allowed === CONTENDED_LIMIT && maxUsed === BigInt(CONTENDED_LIMIT)
      ? []
      : [
          `contention: ${allowed} allowed (highest used ${maxUsed}) for a limit of ${CONTENDED_LIMIT}`,
        ];
  return { summary, problems };
}
