import { timestampMs } from '@bufbuild/protobuf/wkt';
import type { QuotaStatus } from '../../../src/gen/quota/v1/types_pb.js';
import { h } from '../dom.js';
import { formatRelative, formatTime, PERIOD_NAMES, percentUsed, usageText } from '../logic.js';

/**
 * A quota's usage: a <meter> (its value is announced by screen readers) with the numbers
 * written beside it, so neither colour nor the bar alone carries the meaning.
 */
export function usageBar(q: QuotaStatus): HTMLElement {
  const pct = percentUsed(q.used, q.limit);
  const meter = h('meter', {
    min: 0,
    max: Number(q.limit),
    value: Number(q.used),
    low: Number(q.limit) * 0.75,
    high: Number(q.limit) * 0.9,
    optimum: 0,
    'aria-label': `${q.metric} per ${PERIOD_NAMES[q.period]}`,
    'data-used': q.used.toString(),
    'data-limit': q.limit.toString(),
    'data-reserved': q.reserved.toString(),
  });
  return h(
    'div',
    { class: `usage${pct >= 100 ? ' full' : ''}` },
    meter,
    h(
      'span',
      { class: 'usage-text' },
      usageText(q.used, q.limit, q.reserved),
      pct >= 100 ? ' — at limit' : '',
    ),
  );
}

/** When the quota resets: relative and absolute; never for PERIOD_NEVER. */
export function resetsAt(q: QuotaStatus, nowMs = Date.now()): string {
  if (!q.periodEnd) return 'never resets';
  return `resets ${formatRelative(timestampMs(q.periodEnd), nowMs)} (${formatTime(q.periodEnd)})`;
}

export const subjectLink = (subject: string): HTMLElement =>
  h('a', { href: `#/subject?name=${encodeURIComponent(subject)}` }, subject);
