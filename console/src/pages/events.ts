import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { EventType, type LedgerEvent } from '../../../src/gen/quota/v1/types_pb.js';
import type { ListEventsRequestSchema } from '../../../src/gen/quota/v1/quota_admin_service_pb.js';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { admin, message } from '../api.js';
import { field, h, status, table } from '../dom.js';
import { EVENT_NAMES, followAfter, formatCount, formatTime, PERIOD_NAMES } from '../logic.js';
import type { PageContext } from '../main.js';
import { subjectLink } from './widgets.js';

const POLL_MS = 2_000;

/** What an event did, in a few words. */
function detail(e: LedgerEvent): string {
  switch (e.type) {
    case EventType.USAGE:
      return `+${formatCount(e.amount)}${e.overLimit ? ' (over limit)' : ''}`;
    case EventType.REFUND:
      return `-${formatCount(e.amount)}`;
    case EventType.QUOTA_SET:
      return e.quota
        ? `limit ${formatCount(e.quota.limit)} per ${PERIOD_NAMES[e.quota.period]}`
        : '';
    case EventType.RESET_MANUAL:
    case EventType.RESET_SCHEDULED:
      return `${PERIOD_NAMES[e.period]}: ${formatCount(e.usedBefore)} → 0`;
    default:
      return PERIOD_NAMES[e.period];
  }
}

export function eventsTable(events: readonly LedgerEvent[]): HTMLElement {
  if (events.length === 0) return h('p', {}, 'No events.');
  return table(
    [
      'Position',
      'Recorded',
      'Subject',
      'Seq',
      'Type',
      'Metric',
      'Detail',
      'Actor',
      'Reason',
      'Idempotency key',
    ],
    events.map((e) => [
      e.position.toString(),
      formatTime(e.recordedAt),
      subjectLink(e.subject),
      e.sequence.toString(),
      h('span', { class: `type type-${EVENT_NAMES[e.type]}` }, EVENT_NAMES[e.type]),
      e.metric,
      detail(e),
      e.actor,
      e.reason,
      e.idempotencyKey,
    ]),
  );
}

const input = (id: string, value = '', type = 'text') =>
  h('input', { id, type, value, autocomplete: 'off' });

/** The audit history with ListEvents' filters: newest first, paged, or followed live. */
export function eventsPage(root: HTMLElement, ctx: PageContext): void {
  const subject = input('ev-subject', ctx.params.get('subject') ?? '');
  const metric = input('ev-metric');
  const actor = input('ev-actor');
  const start = input('ev-start', '', 'datetime-local');
  const end = input('ev-end', '', 'datetime-local');
  const types = Object.entries(EVENT_NAMES)
    .filter(([n]) => n !== '0')
    .map(([n, name]) => ({
      n: Number(n) as EventType,
      box: h('input', { type: 'checkbox', id: `ev-type-${name}` }),
      name,
    }));
  const follow = h('input', { type: 'checkbox', id: 'ev-follow' });
  const form = h(
    'form',
    { class: 'filters' },
    field('Subject', subject),
    field('Metric', metric),
    field('Actor', actor),
    field('Recorded at or after (local time)', start),
    field('Recorded before (local time)', end),
    h(
      'fieldset',
      {},
      h('legend', {}, 'Types (none: all)'),
      ...types.map((t) => h('label', { class: 'check' }, t.box, ` ${t.name}`)),
    ),
    h('button', { type: 'submit' }, 'Search'),
    h('label', { class: 'check' }, follow, ' Follow new events live'),
  );
  const st = status();
  const out = h('div', {});
  const more = h('button', { type: 'button', hidden: true }, 'Older events');
  root.append(form, st, out, more);

  let shown: LedgerEvent[] = [];
  let next = '';
  let timer: ReturnType<typeof setInterval> | undefined;
  ctx.onLeave(() => clearInterval(timer));

  const filters = (): MessageInitShape<typeof ListEventsRequestSchema> => ({
    subject: subject.value.trim(),
    metric: metric.value.trim(),
    actor: actor.value.trim(),
    types: types.filter((t) => t.box.checked).map((t) => t.n),
    startTime: start.value ? timestampFromMs(new Date(start.value).getTime()) : undefined,
    endTime: end.value ? timestampFromMs(new Date(end.value).getTime()) : undefined,
  });
  const draw = () => {
    out.replaceChildren(eventsTable(shown));
    more.hidden = next === '';
  };
  const load = async (pageToken: string) => {
    st.show('Loading…');
    try {
      const r = await admin.listEvents({
        ...filters(),
        newestFirst: true,
        pageSize: 50,
        pageToken,
      });
      shown = pageToken ? [...shown, ...r.events] : r.events;
      next = r.nextPageToken;
      draw();
      st.show(`${shown.length} event(s), newest first.`);
    } catch (err) {
      st.show(message(err), true);
    }
  };
  // No streaming RPC exists: following is polling with after_position, re-reading a short
  // window (see followAfter) and keeping each position once.
  const poll = async () => {
    try {
      const r = await admin.listEvents({
        ...filters(),
        afterPosition: followAfter(shown),
        pageSize: 1000,
      });
      const seen = new Set(shown.map((e) => e.position));
      const fresh = r.events.filter((e) => !seen.has(e.position));
      if (fresh.length) {
        shown = [...fresh.reverse(), ...shown].sort((a, b) => (a.position < b.position ? 1 : -1));
        draw();
        st.show(`${shown.length} event(s), newest first; following.`);
      }
    } catch (err) {
      st.show(message(err), true);
    }
  };
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    void load('');
  });
  more.addEventListener('click', () => void load(next));
  follow.addEventListener('change', () => {
    clearInterval(timer);
    if (follow.checked) timer = setInterval(() => void poll(), POLL_MS);
    st.show(`${shown.length} event(s), newest first${follow.checked ? '; following' : ''}.`);
  });
  void load('');
}
