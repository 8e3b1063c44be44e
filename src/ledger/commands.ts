import type { Clock } from '../domain/clock.js';
import type { PeriodKind } from '../domain/period.js';
import type { Db } from './db.js';

/** What every ledger command needs: the database and the one clock. */
export interface LedgerDeps {
  db: Db;
  clock: Clock;
}

export type { ConsumeCommand } from '../domain/consume-batch.js';

export interface RefundCommand {
  subject: string;
  metric: string;
  amount: bigint;
  idempotencyKey: string | null;
  usageIdempotencyKey: string | null;
  reason: string | null;
  /**
   * Whether a refund may give back usage without naming it (admin): a consumer's refund must
   * name the usage it returns, and is capped by it.
   */
  unnamedAllowed?: boolean;
}

export interface SetQuotaCommand {
  subject: string;
  metric: string;
  period: PeriodKind;
  limit: bigint;
  timeZone: string;
  anchorDay: number;
  reason: string | null;
}

export interface DeleteQuotaCommand {
  subject: string;
  metric: string;
  period: PeriodKind;
  reason: string | null;
}

export interface ResetCommand {
  /** null with allSubjects. */
  subject: string | null;
  metric: string | null;
  period: PeriodKind | null;
  reason: string | null;
}
