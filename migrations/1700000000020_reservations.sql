-- Up Migration

-- Reservations (issue 19): four more event types.
ALTER TABLE ledger_events DROP CONSTRAINT ledger_events_type_check;
ALTER TABLE ledger_events ADD CONSTRAINT ledger_events_type_check
  CHECK (type IN ('USAGE', 'REFUND', 'QUOTA_SET', 'QUOTA_DELETED', 'RESET_SCHEDULED',
                  'RESET_MANUAL', 'RESERVED', 'RESERVATION_COMMITTED', 'RESERVATION_CANCELLED',
                  'RESERVATION_EXPIRED'));
ALTER TABLE ledger_events ADD CONSTRAINT ledger_events_reservation_id
  CHECK (type NOT IN ('RESERVED', 'RESERVATION_COMMITTED', 'RESERVATION_CANCELLED',
                      'RESERVATION_EXPIRED') OR data ? 'reservationId');

-- One hold per reservation id, and it is settled at most once, whichever way (commit, cancel,
-- expiry) and however many callers and sweeps race: the database refuses the second.
CREATE UNIQUE INDEX ledger_events_one_reservation
  ON ledger_events (subject, (data->>'reservationId')) WHERE type = 'RESERVED';
CREATE UNIQUE INDEX ledger_events_one_settlement
  ON ledger_events (subject, (data->>'reservationId'))
  WHERE type IN ('RESERVATION_COMMITTED', 'RESERVATION_CANCELLED', 'RESERVATION_EXPIRED');

-- What open holds of the counter's current period add up to (the fold of the ledger; a hold
-- past its expiry still counts here until its RESERVATION_EXPIRED event, decisions leave it out).
ALTER TABLE counters ADD COLUMN reserved bigint NOT NULL DEFAULT 0 CHECK (reserved >= 0);

-- The open holds: a projection of RESERVED events not yet settled, keyed by subject first.
-- A row goes away with the event that settles its hold. `holds` lists the counters (period,
-- period start) the hold was added to, so a release touches only periods still current.
CREATE TABLE reservations (
  subject        text        NOT NULL,
  reservation_id text        NOT NULL,
  metric         text        NOT NULL,
  amount         bigint      NOT NULL CHECK (amount > 0),
  expires_at     timestamptz NOT NULL,
  sequence       bigint      NOT NULL,
  holds          jsonb       NOT NULL,
  PRIMARY KEY (subject, reservation_id)
);
CREATE INDEX reservations_expires_at ON reservations (expires_at);

-- Down Migration

DROP TABLE reservations;
ALTER TABLE counters DROP COLUMN reserved;
DROP INDEX ledger_events_one_settlement;
DROP INDEX ledger_events_one_reservation;
ALTER TABLE ledger_events DROP CONSTRAINT ledger_events_reservation_id;
ALTER TABLE ledger_events DROP CONSTRAINT ledger_events_type_check;
ALTER TABLE ledger_events ADD CONSTRAINT ledger_events_type_check
  CHECK (type IN ('USAGE', 'REFUND', 'QUOTA_SET', 'QUOTA_DELETED', 'RESET_SCHEDULED',
                  'RESET_MANUAL'));
