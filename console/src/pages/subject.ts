import { timestampFromMs, timestampMs } from '@bufbuild/protobuf/wkt';
import type { LedgerEvent, QuotaStatus } from '../../../src/gen/quota/v1/types_pb.js';
import { admin, message, quota } from '../api.js';
import { field, h, status } from '../dom.js';
import { PERIOD_NAMES, usageChart } from '../logic.js';
import type { PageContext } from '../main.js';
import { usageChartSvg } from './chart.js';
import { eventsTable } from './events.js';
import { resetsAt, usageBar } from './widgets.js';

/** One subject: its quotas with a chart each, and its recent events. */
export function subjectPage(root: HTMLElement, ctx: PageContext): void {
  const name = ctx.params.get('name') ?? '';
  const input = h('input', {
    id: 'subject-name',
    value: name,
    required: true,
    autocomplete: 'off',
  });
  const form = h(
    'form',
    { class: 'inline' },
    field('Subject', input),
    h('button', { type: 'submit' }, 'Show'),
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    location.hash = `#/subject?name=${encodeURIComponent(input.value)}`;
  });
  const st = status();
  const out = h('div', {});
  root.append(form, st, out);
  if (name) void load(name, ctx, st, out);
}

async function load(
  subject: string,
  ctx: PageContext,
  st: ReturnType<typeof status>,
  out: HTMLElement,
): Promise<void> {
  st.show('Loading…');
  try {
    const { quotas } = await quota.getQuota({ subject });
    const canRead = ctx.me.role !== 'consumer';
    const cards: HTMLElement[] = [];
    for (const q of quotas) cards.push(await quotaCard(q, ctx, canRead));
    out.replaceChildren(
      ...(cards.length ? cards : [h('p', {}, 'No quota applies to this subject.')]),
    );
    if (canRead) {
      const recent = await admin.listEvents({ subject, newestFirst: true, pageSize: 20 });
      out.append(h('h3', {}, 'Recent events'), eventsTable(recent.events));
    }
    st.show(`${quotas.length} quota(s).`);
  } catch (err) {
    st.show(message(err), true);
  }
}

async function quotaCard(q: QuotaStatus, ctx: PageContext, canRead: boolean): Promise<HTMLElement> {
  const title = `${q.metric} per ${PERIOD_NAMES[q.period]}${q.isDefault ? ' (default quota)' : ''}`;
  const card = h(
    'article',
    { class: 'card quota', 'data-metric': q.metric },
    h('h3', {}, title),
    usageBar(q),
    h('p', {}, resetsAt(q)),
  );
  if (canRead && q.periodStart) {
    const start = timestampMs(q.periodStart);
    const end = q.periodEnd ? timestampMs(q.periodEnd) : null;
    const events: LedgerEvent[] = [];
    let pageToken = '';
    // At most five pages: enough for a picture; a busier quota's chart says it is partial.
    for (let i = 0; i < 5; i++) {
      const r = await admin.listEvents({
        subject: q.subject,
        metric: q.metric,
        startTime: timestampFromMs(end === null ? start : start - (end - start)),
        pageSize: 1000,
        pageToken,
      });
      events.push(...r.events);
      pageToken = r.nextPageToken;
      if (!pageToken) break;
    }
    const chart = usageChart(
      events,
      { metric: q.metric, period: q.period, periodStartMs: start, periodEndMs: end },
      Date.now(),
    );
    card.append(usageChartSvg(chart, Number(q.limit), title));
    if (pageToken) card.append(h('p', {}, 'Chart drawn from the first 5,000 events only.'));
  }
  if (ctx.me.role === 'admin') {
    const p = new URLSearchParams({
      // A default quota is changed at "*"; the subject's own counters are still reset by name.
      subject: q.isDefault ? '*' : q.subject,
      resetSubject: q.subject,
      metric: q.metric,
      period: String(q.period),
      limit: q.limit.toString(),
    });
    card.append(h('p', {}, h('a', { href: `#/editor?${p}`, class: 'button' }, 'Edit or reset')));
  }
  return card;
}
