import { QuotaError } from '../domain/errors.js';
import { newEvent } from '../domain/events.js';
import type { QuotaDef } from '../domain/quota.js';
import type { DeleteQuotaCommand, LedgerDeps, SetQuotaCommand } from './commands.js';
import { quotaFromRow, QUOTA_COLUMNS, type QuotaRow } from './codec.js';
import { inTransaction, query } from './db.js';
import { SubjectWriter } from './subject-writer.js';

export async function setQuota(
  deps: LedgerDeps,
  cmd: SetQuotaCommand,
  actor: string,
  signal?: AbortSignal,
): Promise<{ quota: QuotaDef; sequence: bigint }> {
  return inTransaction(
    deps.db,
    async (tx) => {
      const w = await SubjectWriter.open(tx, cmd.subject);
      const now = deps.clock.now();
      const rows = await tx.query<QuotaRow>(
        `INSERT INTO quotas (${QUOTA_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (subject, metric, period) DO UPDATE SET quota_limit = EXCLUDED.quota_limit,
         time_zone = EXCLUDED.time_zone, anchor_day = EXCLUDED.anchor_day, updated_at = EXCLUDED.updated_at
       RETURNING ${QUOTA_COLUMNS}`,
        [cmd.subject, cmd.metric, cmd.period, cmd.limit, cmd.timeZone, cmd.anchorDay, now],
      );
      const sequence = w.append(
        newEvent({
          type: 'QUOTA_SET',
          subject: cmd.subject,
          actor,
          recordedAt: now,
          metric: cmd.metric,
          period: cmd.period,
          reason: cmd.reason,
          data: { quota: { limit: cmd.limit, timeZone: cmd.timeZone, anchorDay: cmd.anchorDay } },
        }),
      );
      await w.flush();
      return { quota: quotaFromRow(rows.rows[0]!), sequence };
    },
    signal,
  );
}

export async function deleteQuota(
  deps: LedgerDeps,
  cmd: DeleteQuotaCommand,
  actor: string,
  signal?: AbortSignal,
): Promise<bigint> {
  return inTransaction(
    deps.db,
    async (tx) => {
      const w = await SubjectWriter.open(tx, cmd.subject);
      const rows = await tx.query<QuotaRow>(
        `DELETE FROM quotas WHERE subject = $1 AND metric = $2 AND period = $3 RETURNING ${QUOTA_COLUMNS}`,
        [cmd.subject, cmd.metric, cmd.period],
      );
      const gone = rows.rows[0];
      if (!gone) {
        throw new QuotaError(
          'NOT_FOUND',
          `subject "${cmd.subject}" has no ${cmd.period} quota of its own on metric "${cmd.metric}"`,
        );
      }
      const sequence = w.append(
        newEvent({
          type: 'QUOTA_DELETED',
          subject: cmd.subject,
          actor,
          recordedAt: deps.clock.now(),
          metric: cmd.metric,
          period: cmd.period,
          reason: cmd.reason,
          data: {
            quota: {
              limit: gone.quota_limit,
              timeZone: gone.time_zone,
              anchorDay: gone.anchor_day,
            },
          },
        }),
      );
      await w.flush();
      return sequence;
    },
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
    deps.db,
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
