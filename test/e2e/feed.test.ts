import { Code, ConnectError } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Period } from '../../src/gen/quota/v1/types_pb.js';
import { startTestServer, type TestServer } from '../support/server.js';

// ListEvents oldest first is the feed: resumable after any event it sent, by position or token.

let s: TestServer;

beforeAll(async () => {
  s = await startTestServer();
  await s.connect.admin.setQuota({
    subject: 'feed',
    metric: 'api_calls',
    period: Period.DAY,
    limit: 100n,
    reason: 'feed',
  });
  for (let i = 0; i < 5; i++) {
    await s.connect.quota.consume({ subject: 'feed', metric: 'api_calls', amount: 1n });
  }
});
afterAll(() => s.close());

describe('ListEvents as a feed', () => {
  it('resumes after a position or a page token, at the same place', async () => {
    const all = await s.connect.admin.listEvents({ subject: 'feed' });
    expect(all.events.map((e) => e.sequence)).toEqual([1n, 2n, 3n, 4n, 5n, 6n]);
    const first = await s.connect.admin.listEvents({ subject: 'feed', pageSize: 2 });
    const byToken = await s.connect.admin.listEvents({
      subject: 'feed',
      pageSize: 2,
      pageToken: first.nextPageToken,
    });
    const byPosition = await s.connect.admin.listEvents({
      subject: 'feed',
      pageSize: 2,
      afterPosition: first.events[1]!.position,
    });
    expect(byToken.events.map((e) => e.sequence)).toEqual([3n, 4n]);
    expect(byPosition.events).toEqual(byToken.events);
    expect(byPosition.nextPageToken).toBe(byToken.nextPageToken);
  });

  it('refuses a position that names no event, and changes nothing', async () => {
    const before = await s.connect.admin.listEvents({});
    const err = await s.connect.admin.listEvents({ afterPosition: 1_000_000n }).then(
      () => null,
      (e: unknown) => ConnectError.from(e),
    );
    expect(err?.code).toBe(Code.InvalidArgument);
    expect(err?.rawMessage).toMatch(/^after_position/);
    expect(await s.connect.admin.listEvents({})).toEqual(before);
  });

  it('exports how far followers are held back', async () => {
    const text = await (await fetch(`${s.baseUrl}/metrics`)).text();
    expect(text).toMatch(/^quota_feed_lag_seconds \d/m);
    expect(text).toMatch(/^quota_feed_held_back_events \d/m);
  });
});
