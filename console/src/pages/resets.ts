import type { ResetRun } from '../../../src/gen/quota/v1/types_pb.js';
import { admin, message } from '../api.js';
import { h, status, table } from '../dom.js';
import { formatCount, formatTime } from '../logic.js';
import type { PageContext } from '../main.js';

const runRow = (r: ResetRun) => [
  r.id.toString(),
  r.trigger,
  r.outcome,
  formatTime(r.startedAt),
  formatTime(r.finishedAt),
  formatCount(r.countersRolled),
  String(r.attempt),
  r.replicaId,
  r.error,
];
const RUN_HEADERS = [
  'Run',
  'Trigger',
  'Outcome',
  'Started',
  'Finished',
  'Counters rolled',
  'Attempt',
  'Replica',
  'Error',
];

/** The scheduler's status, its run history, and (admin) a button to sweep now. */
export function resetsPage(root: HTMLElement, ctx: PageContext): void {
  const st = status();
  const statusBox = h('dl', { class: 'card status-list' });
  const runs = h('div', {});
  const more = h('button', { type: 'button', hidden: true }, 'Older runs');
  root.append(st, statusBox);
  if (ctx.me.role === 'admin') {
    const sweep = h('button', { type: 'button', id: 'run-sweep' }, 'Run sweep now');
    const result = status();
    sweep.addEventListener('click', async () => {
      sweep.disabled = true;
      result.show('Sweeping…');
      try {
        const { run } = await admin.triggerResetSweep({});
        result.show(
          run
            ? `Run ${run.id}: ${run.outcome}, ${formatCount(run.countersRolled)} counter(s) rolled.`
            : 'Done.',
        );
        await refresh();
      } catch (err) {
        result.show(message(err), true);
      } finally {
        sweep.disabled = false;
      }
    });
    root.append(h('p', {}, sweep), result);
  }
  root.append(h('h3', {}, 'Run history (newest first)'), runs, more);

  let shown: ResetRun[] = [];
  let next = '';
  const loadRuns = async (pageToken: string) => {
    const r = await admin.listResetRuns({ pageSize: 20, pageToken });
    shown = pageToken ? [...shown, ...r.runs] : r.runs;
    next = r.nextPageToken;
    runs.replaceChildren(
      shown.length ? table(RUN_HEADERS, shown.map(runRow)) : h('p', {}, 'No runs yet.'),
    );
    more.hidden = next === '';
  };
  const refresh = async () => {
    st.show('Loading…');
    try {
      const s = await admin.getResetStatus({});
      const item = (k: string, v: string) => [h('dt', {}, k), h('dd', {}, v)];
      statusBox.replaceChildren(
        ...item('Scheduled resets', s.enabled ? 'on' : 'off (periods roll lazily)'),
        ...item('Schedule', `${s.schedule} (${s.timeZone})`),
        ...item('Next run', formatTime(s.nextRunTime)),
        ...item('Running now', s.running ? `yes, since ${formatTime(s.runningSince)}` : 'no'),
        ...item(
          'Last run',
          s.lastRun ? `${s.lastRun.outcome} at ${formatTime(s.lastRun.finishedAt)}` : 'none',
        ),
        ...item('Replica', s.replicaId),
      );
      await loadRuns('');
      st.show('');
    } catch (err) {
      st.show(message(err), true);
    }
  };
  more.addEventListener(
    'click',
    () => void loadRuns(next).catch((err) => st.show(message(err), true)),
  );
  void refresh();
}
