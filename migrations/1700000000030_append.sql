-- Up Migration

-- The one way anything is written to a subject's ledger (message-db's write_message, for a
-- batch): the events, in sequence order; the counters they leave (computed by the service with
-- the same evolveCounter that defines the projection); each subject's new last sequence,
-- provided it still has the sequence the events follow (the expected version) and its row is
-- still the version the writer read (xmin, which a repair also moves; NULL when the writer
-- holds the row's lock); and the two projections that follow from event types alone: quota settings
-- (QUOTA_SET / QUOTA_DELETED) and open holds (RESERVED, then one settlement).
--
-- Nothing is written unless every subject is as read: otherwise serialization_failure (40001),
-- after which the service redoes the work under the subjects' locks. Running as its owner, it
-- is the only way the service's role (ops/db/app-role.sql) may append to the ledger or change
-- these projections. A plpgsql function also parses its statements once per session, where
-- the service's own statements would be sent and parsed on every call.
CREATE FUNCTION quota_append(
  e_subject text[], e_sequence int8[], e_type text[], e_metric text[], e_amount int8[],
  e_period text[], e_period_start timestamptz[], e_period_end timestamptz[], e_actor text[],
  e_reason text[], e_idempotency_key text[], e_attributes jsonb, e_data jsonb,
  e_recorded_at timestamptz[],
  c_subject text[], c_metric text[], c_period text[], c_used int8[], c_reserved int8[],
  c_period_start timestamptz[], c_period_end timestamptz[], c_last_reset_at timestamptz[],
  c_last_sequence int8[],
  s_subject text[], s_expected int8[], s_last_sequence int8[], s_version text[]
) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
  moved int;
BEGIN
  UPDATE subjects s SET last_sequence = u.last_sequence
    FROM unnest(s_subject, s_expected, s_last_sequence, s_version)
         AS u(subject, expected, last_sequence, version)
   WHERE s.subject = u.subject AND s.last_sequence = u.expected
     AND (u.version IS NULL OR s.xmin::text = u.version);
  GET DIAGNOSTICS moved = ROW_COUNT;
  IF moved <> coalesce(cardinality(s_subject), 0) THEN
    RAISE EXCEPTION 'concurrent change: a subject changed since it was read'
      USING ERRCODE = 'serialization_failure';
  END IF;

  -- WITH ORDINALITY keeps the given order: the hash-chain trigger links each event to the
  -- one before it, so a subject's events must arrive in sequence order. Payloads and
  -- attributes come as one JSON array each (element n for event n), zipped with the columns by
  -- ROWS FROM: one JSON document costs less to send and parse than thousands of escaped jsonb
  -- array elements.
  INSERT INTO ledger_events (subject, sequence, type, metric, amount, period, period_start,
      period_end, actor, reason, idempotency_key, attributes, data, recorded_at)
  SELECT subject, sequence, type, metric, amount, period, period_start, period_end, actor,
         reason, idempotency_key, nullif(attributes, 'null'), data, recorded_at
    FROM ROWS FROM (unnest(e_subject), unnest(e_sequence), unnest(e_type), unnest(e_metric),
                    unnest(e_amount), unnest(e_period), unnest(e_period_start),
                    unnest(e_period_end), unnest(e_actor), unnest(e_reason),
                    unnest(e_idempotency_key), unnest(e_recorded_at),
                    jsonb_array_elements(e_attributes), jsonb_array_elements(e_data))
         WITH ORDINALITY
         AS e(subject, sequence, type, metric, amount, period, period_start, period_end, actor,
              reason, idempotency_key, recorded_at, attributes, data, n)
   ORDER BY n;

  INSERT INTO counters (subject, metric, period, used, reserved, period_start, period_end,
      last_reset_at, last_sequence)
  SELECT * FROM unnest(c_subject, c_metric, c_period, c_used, c_reserved, c_period_start,
                       c_period_end, c_last_reset_at, c_last_sequence)
  ON CONFLICT (subject, metric, period) DO UPDATE SET
    used = EXCLUDED.used, reserved = EXCLUDED.reserved, period_start = EXCLUDED.period_start,
    period_end = EXCLUDED.period_end, last_reset_at = EXCLUDED.last_reset_at,
    last_sequence = EXCLUDED.last_sequence;

  -- Quota settings and open holds are rare among events: skip the scans when there are none.
  IF 'QUOTA_SET' = ANY(e_type) OR 'QUOTA_DELETED' = ANY(e_type) THEN
    INSERT INTO quotas (subject, metric, period, quota_limit, time_zone, anchor_day, updated_at)
    SELECT e.subject, e.metric, e.period, (e.data->'quota'->>'limit')::bigint,
           e.data->'quota'->>'timeZone', (e.data->'quota'->>'anchorDay')::smallint, e.recorded_at
      FROM ROWS FROM (unnest(e_subject), unnest(e_type), unnest(e_metric), unnest(e_period),
                      unnest(e_recorded_at), jsonb_array_elements(e_data))
           AS e(subject, type, metric, period, recorded_at, data)
     WHERE e.type = 'QUOTA_SET'
    ON CONFLICT (subject, metric, period) DO UPDATE SET quota_limit = EXCLUDED.quota_limit,
      time_zone = EXCLUDED.time_zone, anchor_day = EXCLUDED.anchor_day,
      updated_at = EXCLUDED.updated_at;
    DELETE FROM quotas q
     USING unnest(e_subject, e_type, e_metric, e_period) AS e(subject, type, metric, period)
     WHERE e.type = 'QUOTA_DELETED'
       AND q.subject = e.subject AND q.metric = e.metric AND q.period = e.period;
  END IF;
  IF 'RESERVED' = ANY(e_type) OR 'RESERVATION_COMMITTED' = ANY(e_type)
     OR 'RESERVATION_CANCELLED' = ANY(e_type) OR 'RESERVATION_EXPIRED' = ANY(e_type) THEN
    INSERT INTO reservations (subject, reservation_id, metric, amount, expires_at, sequence, holds)
    SELECT e.subject, e.data->>'reservationId', e.metric, e.amount,
           (e.data->>'expiresAt')::timestamptz, e.sequence,
           coalesce((SELECT jsonb_agg(jsonb_build_object('period', h->'period',
                                                         'periodStart', h->'periodStart'))
                       FROM jsonb_array_elements(e.data->'holds') h), '[]'::jsonb)
      FROM ROWS FROM (unnest(e_subject), unnest(e_sequence), unnest(e_type), unnest(e_metric),
                      unnest(e_amount), jsonb_array_elements(e_data))
           AS e(subject, sequence, type, metric, amount, data)
     WHERE e.type = 'RESERVED';
    DELETE FROM reservations r
     USING ROWS FROM (unnest(e_subject), unnest(e_type), jsonb_array_elements(e_data))
           AS e(subject, type, data)
     WHERE e.type IN ('RESERVATION_COMMITTED', 'RESERVATION_CANCELLED', 'RESERVATION_EXPIRED')
       AND r.subject = e.subject AND r.reservation_id = e.data->>'reservationId';
  END IF;
END
$$;
-- Planned for each call's own arrays (see quota_read_subjects): a plan kept from before the
-- tables were first analyzed must not outlive the first minutes of a new database.
ALTER FUNCTION quota_append(text[], int8[], text[], text[], int8[], text[], timestamptz[],
  timestamptz[], text[], text[], text[], jsonb, jsonb, timestamptz[], text[], text[], text[],
  int8[], int8[], timestamptz[], timestamptz[], timestamptz[], int8[], text[], int8[], int8[],
  text[]) SET plan_cache_mode = force_custom_plan;
REVOKE ALL ON FUNCTION quota_append(text[], int8[], text[], text[], int8[], text[],
  timestamptz[], timestamptz[], text[], text[], text[], jsonb, jsonb, timestamptz[], text[],
  text[], text[], int8[], int8[], timestamptz[], timestamptz[], timestamptz[], int8[], text[],
  int8[], int8[], text[]) FROM PUBLIC;

-- Down Migration

DROP FUNCTION quota_append(text[], int8[], text[], text[], int8[], text[], timestamptz[],
  timestamptz[], text[], text[], text[], jsonb, jsonb, timestamptz[], text[], text[], text[],
  int8[], int8[], timestamptz[], timestamptz[], timestamptz[], int8[], text[], int8[], int8[], text[]);
