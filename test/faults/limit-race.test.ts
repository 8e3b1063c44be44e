import { Code, ConnectError } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createQuotaClient, Period } from '../../src/client/index.js';
import { startTestServer, type TestServer } from '../support/server.js';

// 64 clients race one limit of 1,000, round after round: exactly 1,000 are allowed each
// time, never 1,001. npm test runs a few rounds; FAULTS_FULL=1 (in .ci/run) runs all 20.

const ROUNDS = process.env.FAULTS_FULL ? 20 : 3;
const CLIENTS = 64;
const LIMIT = 1000n;

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer();
});
afterAll(() => s.close());

describe(`${CLIENTS} clients racing one limit`, () => {
  it(`allow exactly ${LIMIT} each round, for ${ROUNDS} rounds`, async () => {
    const clients = Array.from({ length: CLIENTS }, (_, i) =>
      createQuotaClient(s.baseUrl, {
        transport: i % 2 ? 'grpc' : 'connect',
        retries: 0,
        timeoutMs: 30_000,
      }),
    );
    for (let round = 0; round < ROUNDS; round++) {
      const subject = `hot-${round}`;
      await clients[0]!.admin.setQuota({
        subject,
        metric: 'api_calls',
        period: Period.NEVER,
        limit: LIMIT,
      });
      const allowed = await Promise.all(
        clients.map(async (c) => {
          let mine = 0;
          for (;;) {
            const r = await c.quota
              .consume({ subject, metric: 'api_calls', amount: 1n })
              .catch((e: unknown) => {
                if (e instanceof ConnectError && e.code === Code.Unavailable) return null;
                throw e;
              });
            if (r === null) continue;
            if (!r.allowed) return mine;
            mine++;
          }
        }),
      );
      expect(allowed.reduce((a, b) => a + b, 0)).toBe(Number(LIMIT));
      const q = await clients[0]!.quota.getQuota({ subject, metric: 'api_calls' });
      expect(q.quotas[0]!.used).toBe(LIMIT);
    }
  }, 600_000);
});
