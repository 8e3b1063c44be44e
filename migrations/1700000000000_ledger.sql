-- Up Migration

-- Quota definitions: a small reference table. Subject '*' holds the defaults.
CREATE TABLE quotas (
  subject     text        NOT NULL,
  metric      text        NOT NULL,
  period      text        NOT NULL CHECK (period IN ('DAY', 'WEEK', 'MONTH', 'NEVER')),
  quota_limit bigint      NOT NULL CHECK (quota_limit >= 0),
  time_zone   text        NOT NULL,
  anchor_day  smallint    NOT NULL DEFAULT 0
              CHECK (anchor_day BETWEEN 0 AND 31 AND (anchor_day = 0 OR period = 'MONTH')),
  updated_at  timestamptz NOT NULL,
  PRIMARY KEY (subject, metric, period)
);
CREATE INDEX quotas_metric_period ON quotas (metric, period);

-- One row per subject that has ever written: its last per-subject sequence. Locking this row
-- is how a write transaction serializes with every other writer of the same subject.
CREATE TABLE subjects (
  subject       text   PRIMARY KEY,
  last_sequence bigint NOT NULL DEFAULT 0 CHECK (last_sequence >= 0)
);

-- The append-only ledger. Keyed by subject first so it can be distributed by subject.
CREATE TABLE ledger_events (
  position        bigint      GENERATED ALWAYS AS IDENTITY,
  subject         text        NOT NULL,
  sequence        bigint      NOT NULL CHECK (sequence > 0),
  type            text        NOT NULL CHECK (type IN ('USAGE', 'REFUND', 'QUOTA_SET',
                                'QUOTA_DELETED', 'RESET_SCHEDULED', 'RESET_MANUAL')),
  metric          text,
  amount          bigint      CHECK (amount IS NULL OR amount > 0),
  period          text        CHECK (period IN ('DAY', 'WEEK', 'MONTH', 'NEVER')),
  period_start    timestamptz,
  period_end      timestamptz,
  actor           text        NOT NULL,
  reason          text,
  idempotency_key text,
  attributes      jsonb,
  data            jsonb       NOT NULL DEFAULT '{}',
  recorded_at     timestamptz NOT NULL,
  PRIMARY KEY (subject, sequence),
  CHECK (type <> 'RESET_SCHEDULED' OR (metric IS NOT NULL AND period IS NOT NULL AND period_start IS NOT NULL))
);
CREATE INDEX ledger_events_position ON ledger_events (position);
-- recorded_at grows with position, so a BRIN index serves time ranges at almost no write cost.
CREATE INDEX ledger_events_recorded_at ON ledger_events USING brin (recorded_at);
-- Idempotency: one usage and one refund per key and subject.
CREATE UNIQUE INDEX ledger_events_idempotency
  ON ledger_events (subject, type, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- Exactly one scheduled reset per counter and period start, however many writers race for it.
CREATE UNIQUE INDEX ledger_events_one_scheduled_reset
  ON ledger_events (subject, metric, period, period_start) WHERE type = 'RESET_SCHEDULED';

CREATE FUNCTION ledger_events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'ledger_events is append-only: % is refused', TG_OP
    USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER ledger_events_append_only
  BEFORE UPDATE OR DELETE ON ledger_events
  FOR EACH ROW EXECUTE FUNCTION ledger_events_refuse_change();
CREATE TRIGGER ledger_events_no_truncate
  BEFORE TRUNCATE ON ledger_events
  FOR EACH STATEMENT EXECUTE FUNCTION ledger_events_refuse_change();

-- The projection: one counter per (subject, metric, period) in its current period.
CREATE TABLE counters (
  subject       text        NOT NULL,
  metric        text        NOT NULL,
  period        text        NOT NULL CHECK (period IN ('DAY', 'WEEK', 'MONTH', 'NEVER')),
  used          bigint      NOT NULL CHECK (used >= 0),
  period_start  timestamptz NOT NULL,
  period_end    timestamptz,
  last_reset_at timestamptz,
  last_sequence bigint      NOT NULL,
  PRIMARY KEY (subject, metric, period)
);
CREATE INDEX counters_period_end ON counters (period_end) WHERE period_end IS NOT NULL;

-- Down Migration
DROP TABLE counters;
DROP TABLE ledger_events;
DROP FUNCTION ledger_events_refuse_change();
DROP TABLE subjects;
DROP TABLE quotas;
