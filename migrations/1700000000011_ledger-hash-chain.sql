-- Up Migration

-- A tamper-evident ledger: every event stores hash = sha256(hash of the subject's previous event
-- || the event's canonical bytes), the first event of a subject chaining to the empty string.
-- Computed by a trigger so that all three ways of appending (consume flushes, SubjectWriter, the
-- sweep's set-based statement) share one definition and no caller can supply its own hash.

-- The bytes an event is hashed over: every column the service writes (not xid, not hash), as a
-- JSON array whose text form PostgreSQL fixes (jsonb normalizes the nested JSON; timestamps as
-- microseconds since the epoch, so the session's TimeZone cannot change them). A column added to
-- ledger_events later is not covered until it is added here, in a new version of this function.
CREATE FUNCTION ledger_event_canonical(e ledger_events) RETURNS bytea
  LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT convert_to(jsonb_build_array(
    'v1', e.position::text, e.subject, e.sequence::text, e.type, e.metric, e.amount::text,
    e.period, (extract(epoch FROM e.period_start) * 1000000)::bigint::text,
    (extract(epoch FROM e.period_end) * 1000000)::bigint::text, e.actor, e.reason,
    e.idempotency_key, e.attributes, e.data,
    (extract(epoch FROM e.recorded_at) * 1000000)::bigint::text
  )::text, 'UTF8')
$$;

-- One link of a chain, and the chain as an aggregate: ledger_chain(x ORDER BY k) folds sha256
-- over the values in order with 32 bytes of state, whatever their number (backfill, checkpoints).
CREATE FUNCTION ledger_chain_step(state bytea, value bytea) RETURNS bytea
  LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT sha256(state || value) $$;
CREATE AGGREGATE ledger_chain(bytea) (SFUNC = ledger_chain_step, STYPE = bytea, INITCOND = '');

ALTER TABLE ledger_events ADD COLUMN hash bytea;

-- Existing events, each subject's in sequence order. The append-only trigger refuses UPDATE, so
-- it is off for this one statement, inside the migration's transaction.
ALTER TABLE ledger_events DISABLE TRIGGER ledger_events_append_only;
UPDATE ledger_events e SET hash = c.hash
  FROM (SELECT subject, sequence,
               ledger_chain(ledger_event_canonical(x)) OVER (PARTITION BY subject ORDER BY sequence) AS hash
          FROM ledger_events x) c
 WHERE e.subject = c.subject AND e.sequence = c.sequence;
ALTER TABLE ledger_events ENABLE TRIGGER ledger_events_append_only;
ALTER TABLE ledger_events ALTER COLUMN hash SET NOT NULL;

-- VOLATILE (the default) matters: the lookup of the previous event then sees the rows inserted
-- earlier by the same statement, so one INSERT may append several events of a subject, in
-- sequence order. An event whose predecessor is missing is refused, loudly: either a writer
-- sequenced wrongly or someone removed history.
CREATE FUNCTION ledger_events_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  prev bytea;
BEGIN
  IF NEW.sequence = 1 THEN
    prev := ''::bytea;
  ELSE
    SELECT hash INTO prev FROM ledger_events
     WHERE subject = NEW.subject AND sequence = NEW.sequence - 1;
    IF prev IS NULL THEN
      RAISE EXCEPTION 'ledger_events: event % of subject % has no previous event to chain to',
        NEW.sequence, NEW.subject USING ERRCODE = 'integrity_constraint_violation';
    END IF;
  END IF;
  NEW.hash := sha256(prev || ledger_event_canonical(NEW));
  RETURN NEW;
END
$$;
CREATE TRIGGER ledger_events_chain BEFORE INSERT ON ledger_events
  FOR EACH ROW EXECUTE FUNCTION ledger_events_chain();

-- Checkpoints make a cut tail detectable: the chain alone cannot tell a subject whose last
-- events were deleted from one that never had them. ledger_checkpoint_heads holds, per subject,
-- the head (sequence and hash) the latest checkpoint saw; heads only move forward.
CREATE TABLE ledger_checkpoint_heads (
  subject  text   PRIMARY KEY,
  sequence bigint NOT NULL CHECK (sequence > 0),
  hash     bytea  NOT NULL
);
-- One row per checkpoint: root = ledger_chain over the heads in subject order; chain links the
-- checkpoints themselves (sha256(previous chain || root)), so none can be dropped or edited
-- without breaking the ones after it.
CREATE TABLE ledger_checkpoints (
  id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  created_at timestamptz NOT NULL,
  subjects   bigint      NOT NULL,
  root       bytea       NOT NULL,
  chain      bytea       NOT NULL
);

-- The bytes a head is hashed over in a checkpoint's root.
CREATE FUNCTION ledger_head_canonical(subject text, sequence bigint, hash bytea) RETURNS bytea
  LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT convert_to(jsonb_build_array(subject, sequence::text, encode(hash, 'hex'))::text, 'UTF8')
$$;

-- Down Migration

DROP FUNCTION ledger_head_canonical(text, bigint, bytea);
DROP TABLE ledger_checkpoints;
DROP TABLE ledger_checkpoint_heads;
DROP TRIGGER ledger_events_chain ON ledger_events;
DROP FUNCTION ledger_events_chain();
ALTER TABLE ledger_events DROP COLUMN hash;
DROP AGGREGATE ledger_chain(bytea);
DROP FUNCTION ledger_chain_step(bytea, bytea);
DROP FUNCTION ledger_event_canonical(ledger_events);
