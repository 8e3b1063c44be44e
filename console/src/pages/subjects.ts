import type { QuotaStatus } from '../../../src/gen/quota/v1/types_pb.js';
import { admin, message, quota } from '../api.js';
import { field, h, status, table } from '../dom.js';
import { PERIOD_NAMES, sortByCloseness, subjectsMatching } from '../logic.js';
import type { PageContext } from '../main.js';
import { resetsAt, subjectLink, usageBar } from './widgets.js';

/** How many subjects one search shows; a prefix narrows it. */
const MAX_SUBJECTS = 50;

/** Subjects by prefix: their quotas' usage, fullest first. */
export function subjectsPage(root: HTMLElement, ctx: PageContext): void {
  const input = h('input', {
    id: 'prefix',
    type: 'search',
    value: ctx.params.get('prefix') ?? '',
    autocomplete: 'off',
  });
  const form = h(
    'form',
    { class: 'inline', role: 'search' },
    field('Subject prefix', input, 'Empty: every subject with a quota of its own'),
    h('button', { type: 'submit' }, 'Search'),
  );
  const st = status();
  const out = h('div', {});
  root.append(form, st, out);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    location.hash = `#/subjects?prefix=${encodeURIComponent(input.value)}`;
  });
  void search(input.value, st, out);
}

async function search(
  prefix: string,
  st: ReturnType<typeof status>,
  out: HTMLElement,
): Promise<void> {
  st.show('Loading…');
  try {
    // ListQuotas filters by exact subject only; the prefix is matched here over its pages.
    const names: string[] = [];
    let pageToken = '';
    for (let i = 0; i < 10; i++) {
      const r = await admin.listQuotas({ pageSize: 1000, pageToken });
      names.push(...r.quotas.map((q) => q.subject));
      pageToken = r.nextPageToken;
      if (!pageToken) break;
    }
    const subjects = subjectsMatching(names, prefix);
    const shown = subjects.slice(0, MAX_SUBJECTS);
    const statuses: QuotaStatus[] = [];
    for (const subject of shown) statuses.push(...(await quota.getQuota({ subject })).quotas);
    const rows = sortByCloseness(statuses).map((q) => [
      subjectLink(q.subject),
      q.metric,
      PERIOD_NAMES[q.period],
      usageBar(q),
      resetsAt(q),
    ]);
    out.replaceChildren(
      rows.length
        ? table(['Subject', 'Metric', 'Period', 'Usage', 'Resets'], rows)
        : h('p', {}, 'No subject matches.'),
    );
    st.show(
      `${subjects.length} subject(s)` +
        (subjects.length > shown.length ? `, the first ${shown.length} shown` : '') +
        ', fullest quota first.',
    );
  } catch (err) {
    st.show(message(err), true);
  }
}
