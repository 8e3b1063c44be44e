import { Period } from '../../../src/gen/quota/v1/types_pb.js';
import { admin, message } from '../api.js';
import { field, h, status } from '../dom.js';
import { formatCount, PERIOD_NAMES } from '../logic.js';
import type { PageContext } from '../main.js';
import { eventsTable } from './events.js';

const text = (id: string, value = '', required = false) =>
  h('input', { id, value, required, autocomplete: 'off' });

function periodSelect(id: string, value: string, allowAny: boolean): HTMLSelectElement {
  const periods = [Period.DAY, Period.WEEK, Period.MONTH, Period.NEVER];
  return h(
    'select',
    { id },
    ...(allowAny ? [h('option', { value: '0' }, 'any')] : []),
    ...periods.map((p) =>
      h('option', { value: String(p), selected: String(p) === value }, PERIOD_NAMES[p]),
    ),
  );
}

/** Every change asks for a reason (it goes into the ledger event) and shows what was written. */
const reasonInput = (id: string) => text(id, '', true);

/** After a write: the subject's newest events, so the result is seen as the ledger has it. */
async function showEvents(out: HTMLElement, subject: string, count: number): Promise<void> {
  if (count <= 0 || subject === '') return;
  const r = await admin.listEvents({ subject, newestFirst: true, pageSize: Math.min(count, 100) });
  out.append(eventsTable(r.events));
}

function form(
  title: string,
  id: string,
  fields: HTMLElement[],
  submit: string,
  run: (st: ReturnType<typeof status>, out: HTMLElement) => Promise<void>,
) {
  const st = status();
  const out = h('div', { class: 'result' });
  const f = h(
    'form',
    { class: 'card', id },
    h('h3', {}, title),
    ...fields,
    h('button', { type: 'submit' }, submit),
    st,
    out,
  );
  f.addEventListener('submit', (ev) => {
    ev.preventDefault();
    out.replaceChildren();
    st.show('Working…');
    run(st, out).catch((err) => st.show(message(err), true));
  });
  return f;
}

/** SetQuota, DeleteQuota and ResetQuota; admins only (the page is not offered to others). */
export function editorPage(root: HTMLElement, ctx: PageContext): void {
  const p = ctx.params;
  const s = {
    subject: text('set-subject', p.get('subject') ?? '', true),
    metric: text('set-metric', p.get('metric') ?? '', true),
    period: periodSelect('set-period', p.get('period') ?? '1', false),
    limit: h('input', {
      id: 'set-limit',
      type: 'number',
      min: 0,
      step: 1,
      required: true,
      value: p.get('limit') ?? '',
    }),
    zone: text('set-zone'),
    anchor: h('input', { id: 'set-anchor', type: 'number', min: 0, max: 31, value: '0' }),
    reason: reasonInput('set-reason'),
  };
  const setForm = form(
    'Set or change a quota',
    'set-form',
    [
      field('Subject ("*" for the default)', s.subject),
      field('Metric', s.metric),
      field('Period', s.period),
      field('Limit', s.limit),
      field('Time zone', s.zone, 'IANA, e.g. Europe/Berlin; empty: UTC'),
      field('Anchor day (month only)', s.anchor, '1–31, or 0 for the calendar month'),
      field('Reason', s.reason),
    ],
    'Set quota',
    async (st, out) => {
      const r = await admin.setQuota({
        subject: s.subject.value,
        metric: s.metric.value,
        period: Number(s.period.value),
        limit: BigInt(s.limit.value || '0'),
        timeZone: s.zone.value,
        anchorDay: Number(s.anchor.value || '0'),
        reason: s.reason.value,
      });
      st.show(
        `QUOTA_SET recorded as sequence ${r.sequence} of ${s.subject.value}: limit ${formatCount(r.quota?.limit ?? 0n)}.`,
      );
      await showEvents(out, s.subject.value, 1);
    },
  );

  const d = {
    subject: text('del-subject', p.get('subject') ?? '', true),
    metric: text('del-metric', p.get('metric') ?? '', true),
    period: periodSelect('del-period', p.get('period') ?? '1', false),
    reason: reasonInput('del-reason'),
  };
  const delForm = form(
    'Delete a quota',
    'delete-form',
    [
      field('Subject', d.subject),
      field('Metric', d.metric),
      field('Period', d.period),
      field('Reason', d.reason),
    ],
    'Delete quota',
    async (st, out) => {
      const r = await admin.deleteQuota({
        subject: d.subject.value,
        metric: d.metric.value,
        period: Number(d.period.value),
        reason: d.reason.value,
      });
      st.show(`QUOTA_DELETED recorded as sequence ${r.sequence} of ${d.subject.value}.`);
      await showEvents(out, d.subject.value, 1);
    },
  );

  const r = {
    subject: text('reset-subject', p.get('resetSubject') ?? p.get('subject') ?? '', true),
    metric: text('reset-metric', p.get('metric') ?? ''),
    period: periodSelect('reset-period', p.get('period') ?? '0', true),
    reason: reasonInput('reset-reason'),
  };
  const resetForm = form(
    'Reset a subject to zero',
    'reset-form',
    [
      field('Subject', r.subject),
      field('Metric', r.metric, 'Empty: every metric'),
      field('Period', r.period),
      field('Reason', r.reason),
    ],
    'Reset',
    async (st, out) => {
      const res = await admin.resetQuota({
        subject: r.subject.value,
        metric: r.metric.value,
        period: Number(r.period.value),
        reason: r.reason.value,
      });
      st.show(
        `${formatCount(res.eventsAppended)} RESET_MANUAL event(s) appended for ${res.quotas.length} quota(s).`,
      );
      await showEvents(out, r.subject.value, Number(res.eventsAppended));
    },
  );
  root.append(setForm, resetForm, delForm);
}
