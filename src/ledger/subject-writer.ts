import { rollEvent } from '../domain/consume-batch.js';
import type { NewEvent, StoredEvent } from '../domain/events.js';
import type { PeriodKind } from '../domain/period.js';
import { counterKey, liveQuotasOf, type CounterState, type LiveQuota } from '../domain/quota.js';
import {
  COUNTER_COLUMNS,
  encodeJson,
  EVENT_COLUMNS,
  eventFromRow,
  type EventRow,
} from './codec.js';
import { countAppended, countByType, type Tx } from './db.js';
import { readConsumeState } from './consume-state.js';

export { SCHEDULER_ACTOR } from '../domain/consume-batch.js';

/**
 * All writes of one subject inside one transaction. Opening it locks the subject's row, so
 * every writer of that subject (consumes, refunds, resets, sweeps) runs one after another and
 * each decision sees the state the previous one committed. Events get gapless per-subject
 * sequences; counters are written once at the end.
 */
export class SubjectWriter {
  private readonly pending: NewEvent[] = [];
  private readonly dirty = new Map<
    string,
    { metric: string; period: PeriodKind; state: CounterState }
  >();

  private constructor(
    readonly tx: Tx,
    readonly subject: string,
    private lastSequence: bigint,
  ) {}

  static async open(tx: Tx, subject: string): Promise<SubjectWriter> {
    const sql = 'SELECT last_sequence FROM subjects WHERE subject = $1 FOR UPDATE';
    let rows = (await tx.query<{ last_sequence: bigint }>(sql, [subject])).rows;
    if (rows.length === 0) {
      await tx.query('INSERT INTO subjects (subject) VALUES ($1) ON CONFLICT DO NOTHING', [
        subject,
      ]);
      rows = (await tx.query<{ last_sequence: bigint }>(sql, [subject])).rows;
    }
    return new SubjectWriter(tx, subject, rows[0]!.last_sequence);
  }

  /** The quotas that apply, each brought to the period containing `now` (rolls appended). */
  async liveQuotas(
    metric: string | null,
    now: Date,
    period: PeriodKind | null = null,
  ): Promise<LiveQuota[]> {
    const keys = {
      subjects: [this.subject],
      metrics: metric === null ? null : [metric],
      keyed: [],
      lapsedAt: now,
    };
    const state = (await readConsumeState(this.tx, keys)).get(this.subject)!;
    const live = liveQuotasOf(state.defs, state.counters, this.subject, now, period, state.lapsed);
    for (const q of live) this.appendRoll(q, now);
    return live;
  }

  /** Appends the RESET_SCHEDULED event of a counter whose period has ended. */
  private appendRoll(q: LiveQuota, now: Date): void {
    const roll = rollEvent(this.subject, q, now);
    if (!roll) return;
    q.counter = { ...q.counter, lastSequence: this.append(roll) };
    this.setCounter(q.def.metric, q.def.period, q.counter);
  }

  async findByKey(type: 'USAGE' | 'REFUND' | 'RESERVED', key: string): Promise<StoredEvent | null> {
    const rows = await this.tx.query<EventRow>(
      `SELECT ${EVENT_COLUMNS} FROM ledger_events WHERE subject = $1 AND type = $2 AND idempotency_key = $3`,
      [this.subject, type, key],
    );
    return rows.rows[0] ? eventFromRow(rows.rows[0]) : null;
  }

  /** Queues an event and returns the sequence it will have. */
  append(event: NewEvent): bigint {
    this.pending.push(event);
    return this.lastSequence + BigInt(this.pending.length);
  }

  setCounter(metric: string, period: PeriodKind, state: CounterState): void {
    this.dirty.set(counterKey(metric, period), { metric, period, state });
  }

  /** Writes the queued events and counters. Returns the events as stored. */
  async flush(): Promise<StoredEvent[]> {
    const stored = await this.insertEvents();
    await this.upsertCounters();
    return stored;
  }

  private async insertEvents(): Promise<StoredEvent[]> {
    if (this.pending.length === 0) return [];
    const values: unknown[] = [];
    const tuples = this.pending.map((e, i) => {
      values.push(
        e.subject,
        this.lastSequence + BigInt(i + 1),
        e.type,
        e.metric,
        e.amount,
        e.period,
        e.periodStart,
        e.periodEnd,
        e.actor,
        e.reason,
        e.idempotencyKey,
        e.attributes ? encodeJson(e.attributes) : null,
        encodeJson(e.data),
        e.recordedAt,
      );
      const b = i * 14;
      return `(${Array.from({ length: 14 }, (_, k) => `$${b + k + 1}`).join(', ')})`;
    });
    const rows = await this.tx.query<EventRow>(
      `INSERT INTO ledger_events (subject, sequence, type, metric, amount, period, period_start,
         period_end, actor, reason, idempotency_key, attributes, data, recorded_at)
       VALUES ${tuples.join(', ')} RETURNING ${EVENT_COLUMNS}`,
      values,
    );
    this.lastSequence += BigInt(this.pending.length);
    countAppended(this.tx, countByType(this.pending));
    this.pending.length = 0;
    await this.tx.query('UPDATE subjects SET last_sequence = $2 WHERE subject = $1', [
      this.subject,
      this.lastSequence,
    ]);
    return rows.rows.map(eventFromRow).sort((a, b) => (a.sequence < b.sequence ? -1 : 1));
  }

  private async upsertCounters(): Promise<void> {
    if (this.dirty.size === 0) return;
    const values: unknown[] = [];
    const tuples = [...this.dirty.values()].map(({ metric, period, state }, i) => {
      values.push(
        this.subject,
        metric,
        period,
        state.used,
        state.periodStart,
        state.periodEnd,
        state.lastResetAt,
        state.lastSequence,
        state.reserved,
      );
      const b = i * 9;
      return `(${Array.from({ length: 9 }, (_, k) => `$${b + k + 1}`).join(', ')})`;
    });
    await this.tx.query(
      `INSERT INTO counters (${COUNTER_COLUMNS}) VALUES ${tuples.join(', ')}
       ON CONFLICT (subject, metric, period) DO UPDATE SET
         used = EXCLUDED.used, reserved = EXCLUDED.reserved, period_start = EXCLUDED.period_start, period_end = EXCLUDED.period_end,
         last_reset_at = EXCLUDED.last_reset_at, last_sequence = EXCLUDED.last_sequence`,
      values,
    );
    this.dirty.clear();
  }
}
