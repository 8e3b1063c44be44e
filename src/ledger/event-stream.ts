import type { CallSignal } from '../cancellation.js';
import type { StoredEvent } from '../domain/events.js';
import { followEvents, type EventFilter, type FeedCursor } from './list-events.js';
import type { Db } from './db.js';

export interface StreamOptions {
  /** How often to look for new events while caught up. */
  pollMs: number;
  /** Idle time after which a heartbeat is sent. */
  heartbeatMs: number;
  /** Events read per query: with one item in flight, what a stream holds in memory at most. */
  pageSize: number;
}

export const STREAM_DEFAULTS: StreamOptions = { pollMs: 200, heartbeatMs: 15_000, pageSize: 100 };

export type StreamItem = { event: StoredEvent } | { heartbeat: Date };

/**
 * The feed from `after` on, forever: every event once, in ListEvents' order, then each new one
 * as it settles, and a heartbeat after each idle `heartbeatMs`. A generator, so the consumer
 * pulls: a slow reader stops the reads (backpressure) and memory stays one page. Polling keeps
 * it simple and correct across replicas; the poll is one index range scan that finds nothing.
 * Ends when `signal` aborts.
 */
export async function* streamEvents(
  db: Db,
  f: EventFilter,
  after: FeedCursor,
  signal: CallSignal,
  o: StreamOptions = STREAM_DEFAULTS,
): AsyncGenerator<StreamItem> {
  let cursor = after;
  let lastSent = Date.now();
  while (!signal.aborted) {
    // No wait for transactions in progress: a stream simply sends their events a poll later.
    const page = await followEvents(db, f, o.pageSize, cursor, 0);
    for (const event of page.events) {
      if (signal.aborted) return;
      yield { event };
    }
    if (page.last) {
      cursor = page.last;
      lastSent = Date.now();
    }
    if (page.more) continue;
    if (Date.now() - lastSent >= o.heartbeatMs) {
      yield { heartbeat: new Date() };
      lastSent = Date.now();
    }
    await sleep(Math.min(o.pollMs, Math.max(1, o.heartbeatMs - (Date.now() - lastSent))), signal);
  }
}

const sleep = (ms: number, signal: CallSignal): Promise<void> =>
  new Promise((ok) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      ok();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
