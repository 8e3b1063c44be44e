import {
  applyConsumes,
  type ConsumeCall,
  type ConsumeCommand,
  type ConsumeOutcome,
  type ConsumeResult,
} from '../domain/consume.js';
import type { CallSignal } from '../cancellation.js';
import type { SubjectChanges } from '../domain/subject-state.js';
import type { LedgerDeps } from './commands.js';
import { cancelledBeforeCommit } from './db.js';
import type { LoadedSubject } from './subject-state.js';
import { writeSubjects, type Outcome } from './write.js';

export type { ConsumeCall, ConsumeOutcome, ConsumeResult } from '../domain/consume.js';

/** A call waiting in a flush; a fired signal before the decision drops it unrecorded. */
export interface PendingConsume extends ConsumeCall {
  signal?: CallSignal;
}

/**
 * Applies consumes in the order given, each answered on its own, and commits them together
 * (see writeSubjects: one read, the decisions in memory, one write; under the subjects' locks
 * if another writer got in between). A failure of the write fails every call of the flush
 * with nothing committed.
 */
export function consumeMany(
  deps: LedgerDeps,
  calls: readonly PendingConsume[],
  signal?: CallSignal,
): Promise<ConsumeOutcome[]> {
  const keys = {
    subjects: calls.map((c) => c.cmd.subject),
    metrics: [...new Set(calls.map((c) => c.cmd.metric))],
    keyed: calls
      .filter((c) => c.cmd.idempotencyKey)
      .map((c) => ({ subject: c.cmd.subject, key: c.cmd.idempotencyKey! })),
    cached: true,
  };
  return writeSubjects(deps, keys, (_q, states, now) => decideAll(states, calls, now), signal);
}

/** One Consume in its own flush: the unbatched path, and the reference for the batched one. */
export async function consume(
  deps: LedgerDeps,
  cmd: ConsumeCommand,
  actor: string,
  signal?: CallSignal,
): Promise<ConsumeResult> {
  const [outcome] = await consumeMany(deps, [{ cmd, actor }], signal);
  if (!outcome!.ok) throw outcome!.error;
  return outcome!.result;
}

/** Decides every call, subject by subject, each subject's calls in arrival order. */
function decideAll(
  states: Map<string, LoadedSubject>,
  calls: readonly PendingConsume[],
  now: Date,
): Outcome<ConsumeOutcome[]> {
  const bySubject = new Map<string, number[]>();
  calls.forEach((c, i) => {
    const list = bySubject.get(c.cmd.subject);
    if (list) list.push(i);
    else bySubject.set(c.cmd.subject, [i]);
  });
  const outcomes: ConsumeOutcome[] = new Array(calls.length);
  const changes: SubjectChanges[] = [];
  for (const [subject, indexes] of bySubject) {
    const live = indexes.filter((i) => {
      if (!calls[i]!.signal?.aborted) return true;
      outcomes[i] = { ok: false, error: cancelledBeforeCommit() };
      return false;
    });
    const applied = applyConsumes(
      states.get(subject)!,
      live.map((i) => calls[i]!),
      now,
    );
    live.forEach((i, k) => (outcomes[i] = applied.outcomes[k]!));
    changes.push(applied.changes);
  }
  // A key whose call recorded no usage was answered as if it had none before; only a read can
  // say that is so (a usage recorded under it does not need one: the unique index checks it).
  const recorded = new Set(
    changes.flatMap((c) =>
      c.events
        .filter((e) => e.type === 'USAGE' && e.idempotencyKey !== null)
        .map((e) => `${e.subject}\u0000${e.idempotencyKey}`),
    ),
  );
  const needsRead = calls.some(
    (c) =>
      c.cmd.idempotencyKey !== null &&
      !recorded.has(`${c.cmd.subject}\u0000${c.cmd.idempotencyKey}`),
  );
  return { changes, result: outcomes, needsRead };
}
