import type { StateReader } from '../ledger/commands.js';
import { mapDbError, reading, type Store } from '../ledger/db.js';
import { readSubjects, type LoadedSubject } from '../ledger/subject-state.js';

interface WaitingRead {
  subject: string;
  now: Date;
  resolve(s: LoadedSubject): void;
  reject(e: unknown): void;
}

// Subjects per statement at most; more waiting readers go in the next one.
const MAX_SUBJECTS = 1_000;

/**
 * Reads of current quota state that arrive together share one statement: at the end of the
 * event-loop turn that brought them, every waiting subject is read at once, with no lock
 * and no transaction. Each read still sees everything committed before it was asked for.
 */
export class QuotaReadBatcher implements StateReader {
  private waiting: WaitingRead[] = [];
  private scheduled = false;

  constructor(private readonly store: Store) {}

  /** `now`: the reader's clock; holds lapsed by then are loaded so it can leave them out. */
  read(subject: string, now: Date): Promise<LoadedSubject> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ subject, now, resolve, reject });
      if (this.scheduled) return;
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        while (this.waiting.length > 0) void this.flush(this.takeBatch());
      });
    });
  }

  private takeBatch(): WaitingRead[] {
    const subjects = new Set<string>();
    let n = 0;
    while (n < this.waiting.length) {
      subjects.add(this.waiting[n]!.subject);
      if (subjects.size > MAX_SUBJECTS) break;
      n++;
    }
    return this.waiting.splice(0, n);
  }

  private async flush(batch: WaitingRead[]): Promise<void> {
    const subjects = [...new Set(batch.map((w) => w.subject))];
    // The latest reader's instant: earlier readers get a few holds too many, which the
    // domain filters by each reader's own instant.
    const lapsedAt = new Date(Math.max(...batch.map((w) => w.now.getTime())));
    try {
      const states = await reading(this.store, () =>
        readSubjects(this.store.db, { subjects, metrics: null, lapsedAt }),
      );
      for (const w of batch) w.resolve(states.get(w.subject)!);
    } catch (err) {
      const mapped = mapDbError(err);
      for (const w of batch) w.reject(mapped);
    }
  }
}
