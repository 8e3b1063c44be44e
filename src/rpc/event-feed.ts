import { create } from '@bufbuild/protobuf';
import { timestampFromDate, type Timestamp } from '@bufbuild/protobuf/wkt';
import { invalid, QuotaError } from '../domain/errors.js';
import { EVENT_TYPES } from '../domain/events.js';
import { checkOptionalMetric, checkOptionalText, checkSubject } from './validate.js';
import {
  StreamEventsResponseSchema,
  type QuotaAdminService,
} from '../gen/quota/v1/quota_admin_service_pb.js';
import type { EventType } from '../gen/quota/v1/types_pb.js';
import type { Db } from '../ledger/db.js';
import { STREAM_DEFAULTS, streamEvents } from '../ledger/event-stream.js';
import {
  FEED_START,
  feedCursorAt,
  feedEnd,
  type EventFilter,
  type FeedCursor,
} from '../ledger/list-events.js';
import {
  allowSubject,
  requireUnscoped,
  type CallContext,
  type ServiceHandlers,
} from './context.js';
import { dateFromProto, eventToProto, eventTypeFromProto } from './convert.js';

/** The filters ListEvents and StreamEvents share, checked; the key's scope enforced. */
export function eventFilterOf(
  req: {
    subject: string;
    metric: string;
    types: EventType[];
    actor: string;
    startTime?: Timestamp;
    endTime?: Timestamp;
  },
  newestFirst: boolean,
  ctx: CallContext,
): EventFilter {
  const filter = {
    newestFirst,
    subject: req.subject === '' ? null : checkSubject(req.subject, 'subject', true),
    metric: checkOptionalMetric(req.metric),
    types: [...new Set(req.types.map((t) => eventTypeFromProto(t)))].sort(
      (a, b) => EVENT_TYPES.indexOf(a) - EVENT_TYPES.indexOf(b),
    ),
    actor: checkOptionalText(req.actor, 'actor'),
    start: dateFromProto(req.startTime, 'start_time'),
    end: dateFromProto(req.endTime, 'end_time'),
  };
  if (filter.subject === null) requireUnscoped(ctx, 'a list without a subject');
  else allowSubject(ctx, filter.subject);
  if (filter.start && filter.end && filter.end < filter.start) {
    throw invalid('end_time', 'is before start_time');
  }
  return filter;
}

/** Following after a position starts after that event in feed order, so it must exist. */
export async function feedCursor(db: Db, afterPosition: bigint): Promise<FeedCursor> {
  if (afterPosition < 0n) throw invalid('after_position', 'must be zero or more');
  if (afterPosition === 0n) return FEED_START;
  const at = await feedCursorAt(db, afterPosition);
  if (!at) {
    throw invalid('after_position', 'names no event; pass the position of an event you were sent');
  }
  return at;
}

/** Streams open on this replica at most: each holds a pooled connection while it polls. */
export const MAX_STREAMS = 64;

/**
 * StreamEvents: validates and authorizes before the first message (a bad request fails the
 * call, it does not end a stream), then relays the ledger stream until the caller goes away.
 */
export function streamEventsHandler(
  db: Db,
  maxStreams = MAX_STREAMS,
): ServiceHandlers<typeof QuotaAdminService>['streamEvents'] {
  let open = 0;
  return async function (req, ctx) {
    const filter = eventFilterOf(req, false, ctx);
    const hb = req.heartbeatSeconds;
    if (hb < 0 || hb > 300) throw invalid('heartbeat_seconds', 'must be 1-300, or 0 for 15');
    const after = req.fromNow ? await feedEnd(db) : await feedCursor(db, req.afterPosition);
    if (open >= maxStreams) {
      throw new QuotaError(
        'UNAVAILABLE',
        `this replica already serves ${maxStreams} event streams; retry later or elsewhere`,
      );
    }
    open++;
    const options = { ...STREAM_DEFAULTS, heartbeatMs: (hb || 15) * 1000 };
    return (async function* () {
      try {
        for await (const item of streamEvents(db, filter, after, ctx.signal, options)) {
          yield create(
            StreamEventsResponseSchema,
            'event' in item
              ? { item: { case: 'event', value: eventToProto(item.event) } }
              : { item: { case: 'heartbeat', value: { time: timestampFromDate(item.heartbeat) } } },
          );
        }
      } finally {
        open--;
      }
    })();
  };
}
