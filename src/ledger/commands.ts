import type { Clock } from '../domain/clock.js';
import type { Store } from './db.js';
import type { SubjectCache } from './subject-cache.js';
import type { LoadedSubject } from './subject-state.js';

/** Reads a subject's current state; the service shares one statement among concurrent reads. */
export interface StateReader {
  read(subject: string, now: Date): Promise<LoadedSubject>;
}

/**
 * The ledger: the database, whoever watches it, and the one clock; what every ledger command
 * is given. `reader` serves GetQuota's plain reads (one statement per read without it);
 * `cache` keeps the states Consume leaves, to decide the next one without a read.
 */
export interface LedgerDeps extends Store {
  clock: Clock;
  reader?: StateReader;
  cache?: SubjectCache;
}

export type { ConsumeCommand } from '../domain/consume.js';
export type { RefundCommand } from '../domain/refund.js';
export type { ResetCommand } from '../domain/reset.js';
export type { DeleteQuotaCommand, SetQuotaCommand } from '../domain/quota-settings.js';
