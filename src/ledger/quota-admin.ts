import {
  decideDeleteQuota,
  decideSetQuota,
  type DeleteQuotaCommand,
  type SetQuotaCommand,
} from '../domain/quota-settings.js';
import type { CallSignal } from '../cancellation.js';
import type { QuotaDef } from '../domain/quota.js';
import type { LedgerDeps } from './commands.js';
import { quotaFromRow, QUOTA_COLUMNS, type QuotaRow } from './codec.js';
import { query } from './db.js';
import { writeSubject } from './write.js';

/** Sets the subject's own quota (the quotas table follows from its QUOTA_SET event). */
export function setQuota(
  deps: LedgerDeps,
  cmd: SetQuotaCommand,
  actor: string,
  signal?: CallSignal,
): Promise<{ quota: QuotaDef; sequence: bigint }> {
  return writeSubject(
    deps,
    cmd.subject,
    [cmd.metric],
    (state, now) => decideSetQuota(state, cmd, actor, now),
    signal,
  );
}

/** Deletes the subject's own quota (NOT_FOUND if it has none of that metric and period). */
export function deleteQuota(
  deps: LedgerDeps,
  cmd: DeleteQuotaCommand,
  actor: string,
  signal?: CallSignal,
): Promise<bigint> {
  return writeSubject(
    deps,
    cmd.subject,
    [cmd.metric],
    (state, now) => decideDeleteQuota(state, cmd, actor, now),
    signal,
  );
}

export interface QuotaPage {
  quotas: QuotaDef[];
  /** The last key of this page when there may be more. */
  next: [string, string, string] | null;
}

export async function listQuotas(
  deps: LedgerDeps,
  filter: { subject: string | null; metric: string | null },
  pageSize: number,
  after: [string, string, string] | null,
): Promise<QuotaPage> {
  const rows = await query<QuotaRow>(
    deps,
    `SELECT ${QUOTA_COLUMNS} FROM quotas
      WHERE ($1::text IS NULL OR subject = $1) AND ($2::text IS NULL OR metric = $2)
        AND ($3::text IS NULL OR (subject, metric, period) > ($3, $4, $5))
      ORDER BY subject, metric, period LIMIT $6`,
    [
      filter.subject,
      filter.metric,
      after?.[0] ?? null,
      after?.[1] ?? null,
      after?.[2] ?? null,
      pageSize + 1,
    ],
  );
  const quotas = rows.slice(0, pageSize).map(quotaFromRow);
  const last = quotas.at(-1);
  return {
    quotas,
    next: rows.length > pageSize && last ? [last.subject, last.metric, last.period] : null,
  };
}
