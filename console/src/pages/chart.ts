import { svg } from '../dom.js';
import { formatCount, type UsageChart } from '../logic.js';

const W = 600;
const H = 180;
const PAD = 36;

/**
 * The two periods as step lines on one time axis: the previous one dashed, the current one
 * solid and thicker, the limit as a dotted line; told apart by line style and a text legend,
 * not by colour.
 */
export function usageChartSvg(chart: UsageChart, limit: number, label: string): SVGElement {
  const top = Math.max(
    limit,
    ...chart.current.map((p) => p.used),
    ...chart.previous.map((p) => p.used),
    1,
  );
  const x = (ms: number) => PAD + (ms / chart.periodMs) * (W - 2 * PAD);
  const y = (v: number) => H - PAD + 10 - (v / top) * (H - PAD - 10);
  const steps = (pts: UsageChart['current']) => {
    const out: string[] = [];
    let last = 0;
    for (const p of pts) {
      out.push(`${x(p.offsetMs).toFixed(1)},${y(last).toFixed(1)}`);
      out.push(`${x(p.offsetMs).toFixed(1)},${y(p.used).toFixed(1)}`);
      last = p.used;
    }
    return out.join(' ');
  };
  const last = (pts: UsageChart['current']) => pts[pts.length - 1]?.used ?? 0;
  // A NEVER quota has no previous period to compare with.
  const hasPrevious = chart.previous.length > 0;
  const now = formatCount(last(chart.current));
  const before = formatCount(last(chart.previous));
  const nowX = hasPrevious ? x(chart.current[chart.current.length - 1]?.offsetMs ?? 0) : 0;
  return svg(
    'svg',
    {
      viewBox: `0 0 ${W} ${H}`,
      width: '100%',
      role: 'img',
      'aria-label': `${label}: ${now} used this period${hasPrevious ? `, ${before} at the end of the previous one` : ''}, limit ${formatCount(limit)}`,
      class: 'chart',
    },
    svg('line', { x1: PAD, y1: H - PAD + 10, x2: W - PAD, y2: H - PAD + 10, class: 'axis' }),
    svg('line', {
      x1: PAD,
      y1: y(limit),
      x2: W - PAD,
      y2: y(limit),
      class: 'limit',
      'stroke-dasharray': '2 4',
    }),
    svg(
      'text',
      { x: W - PAD, y: y(limit) - 4, 'text-anchor': 'end' },
      `limit ${formatCount(limit)}`,
    ),
    hasPrevious
      ? svg('polyline', {
          points: steps(chart.previous),
          class: 'previous',
          fill: 'none',
          'stroke-dasharray': '8 5',
        })
      : null,
    svg('polyline', { points: steps(chart.current), class: 'current', fill: 'none' }),
    svg('text', { x: PAD, y: H - 6 }, 'period start'),
    // Where the current period's line stops: now (unless it would cover an end's label).
    nowX > PAD + 70 && nowX < W - PAD - 70
      ? svg('text', { x: nowX, y: H - 6, 'text-anchor': 'middle' }, 'now')
      : null,
    svg('text', { x: W - PAD, y: H - 6, 'text-anchor': 'end' }, hasPrevious ? 'period end' : 'now'),
    svg(
      'text',
      { x: PAD + 4, y: 14 },
      `solid: this period (${now})${hasPrevious ? ` · dashed: previous (${before})` : ''}`,
    ),
  );
}
