-- Up Migration

-- quota_append, returning the version (xmin) the written subject rows now have and checking
-- the version of the defaults ("*") too. With both, a writer may decide from the state it left
-- behind at its previous append instead of reading it again (src/ledger/subject-cache.ts): if
-- anything changed since, this refuses with 40001 and the writer reads afresh. The old
-- quota_append becomes a call of this one, so replicas of the previous release keep working
-- during a rolling upgrade, and the roles allowed to run it are allowed to run this one.
CREATE FUNCTION quota_append_versioned(
  e_subject text[], e_sequence int8[], e_type text[], e_metric text[], e_amount int8[],
  e_period text[], e_period_start timestamptz[], e_period_end timestamptz[], e_actor text[],
  e_reason text[], e_idempotency_key text[], e_attributes jsonb, e_data jsonb,
  e_recorded_at timestamptz[],
  c_subject text[], c_metric text[], c_period text[], c_used int8[], c_reserved int8[],
  c_period_start timestamptz[], c_period_end timestamptz[], c_last_reset_at timestamptz[],
  c_last_sequence int8[],
  s_subject text[], s_expected int8[], s_last_sequence int8[], s_version text[],
  d_subject text, d_version text
) RETURNS text
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
  moved int;
BEGIN
  -- The defaults a decision used (subject "*"), as quota_read_subjects reports their version
  -- (row version and last sequence): NULL d_subject checks nothing, NULL d_version expects that
  -- no defaults were ever written. A decision taken from a state this process kept (see
  -- src/ledger/subject-cache.ts) may be older than a change of the defaults, which does not
  -- touch the subject's own row.
  IF d_subject IS NOT NULL
     AND (SELECT xmin::text || ':' || last_sequence FROM subjects WHERE subject = d_subject)
         IS DISTINCT FROM d_version THEN
    RAISE EXCEPTION 'concurrent change: the default quotas changed since they were read'
      USING ERRCODE = 'serialization_failure';
  END IF;

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

  -- Every row this statement wrote now has this transaction's id as its xmin: the version a
  -- later append of the same subjects expects.
  RETURN pg_current_xact_id()::xid::text;
END
$$;
REVOKE ALL ON FUNCTION quota_append_versioned(text[], int8[], text[], text[], int8[], text[], timestamptz[],
  timestamptz[], text[], text[], text[], jsonb, jsonb, timestamptz[], text[], text[], text[],
  int8[], int8[], timestamptz[], timestamptz[], timestamptz[], int8[], text[], int8[], int8[],
  text[], text, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION quota_append(

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
BEGIN
  PERFORM quota_append_versioned(e_subject, e_sequence, e_type, e_metric, e_amount, e_period,
    e_period_start, e_period_end, e_actor, e_reason, e_idempotency_key, e_attributes, e_data,
    e_recorded_at, c_subject, c_metric, c_period, c_used, c_reserved, c_period_start,
    c_period_end, c_last_reset_at, c_last_sequence, s_subject, s_expected, s_last_sequence,
    s_version, NULL, NULL);
END
$$;

DO $$
DECLARE
  grantee text;
BEGIN
  FOR grantee IN
    SELECT DISTINCT a.grantee::regrole::text
      FROM pg_proc p, aclexplode(p.proacl) a
     WHERE p.oid = 'quota_append(text[], int8[], text[], text[], int8[], text[], timestamptz[],
  timestamptz[], text[], text[], text[], jsonb, jsonb, timestamptz[], text[], text[], text[],
  int8[], int8[], timestamptz[], timestamptz[], timestamptz[], int8[], text[], int8[], int8[],
  text[])'::regprocedure
       AND a.privilege_type = 'EXECUTE' AND a.grantee <> 0
       AND a.grantee::regrole::text <> current_user
  LOOP
    EXECUTE format('GRANT EXECUTE ON FUNCTION quota_append_versioned(text[], int8[], text[], text[], int8[], text[], timestamptz[],
  timestamptz[], text[], text[], text[], jsonb, jsonb, timestamptz[], text[], text[], text[],
  int8[], int8[], timestamptz[], timestamptz[], timestamptz[], int8[], text[], int8[], int8[],
  text[], text, text) TO %s', grantee);
  END LOOP;
END
$$;

-- The read reports the defaults' version too, as a row of kind 'defaults'.
--
-- Both functions now keep PostgreSQL's default plan caching, where …030 and …031 planned every
-- statement on every call (force_custom_plan; CREATE OR REPLACE drops that setting). Measured
-- on 2026-11-30 with `npm run bench`, two runs each on a new database: ConsumeBatch of 100 went
-- from 5,800-8,700 to 10,000-10,800 events/s while PostgreSQL's CPU per event fell by about
-- 40 %, and a lone Consume's append takes about 0.4 ms less. Plans cached before a new
-- database's first ANALYZE are replaced when autovacuum analyzes the tables.
CREATE OR REPLACE FUNCTION quota_read_subjects(
  p_subjects text[], p_metrics text[], p_key_subjects text[], p_keys text[],
  p_default_subject text, p_lapsed_at timestamptz
) RETURNS TABLE (
  kind text, subject text, metric text, period text, last_sequence int8, version text,
  quota_limit int8, time_zone text, anchor_day int, updated_at timestamptz, used int8,
  reserved int8, period_start timestamptz, period_end timestamptz, last_reset_at timestamptz,
  amount int8, sequence int8, idempotency_key text, data jsonb, expires_at timestamptz,
  reservation_id text, holds jsonb
) LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
BEGIN
  RETURN QUERY
  SELECT 'subject' AS kind, subject, NULL AS metric, NULL AS period, last_sequence,
         xmin::text AS version, NULL::int8 AS quota_limit, NULL AS time_zone,
         NULL::int AS anchor_day, NULL::timestamptz AS updated_at, NULL::int8 AS used,
         NULL::int8 AS reserved, NULL::timestamptz AS period_start,
         NULL::timestamptz AS period_end, NULL::timestamptz AS last_reset_at,
         NULL::int8 AS amount, NULL::int8 AS sequence, NULL AS idempotency_key,
         NULL::jsonb AS data, NULL::timestamptz AS expires_at, NULL AS reservation_id,
         NULL::jsonb AS holds
    FROM subjects WHERE subject = ANY(p_subjects)
  UNION ALL
  SELECT 'defaults', subject, NULL, NULL, last_sequence, xmin::text || ':' || last_sequence,
         NULL, NULL, NULL, NULL,
         NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
    FROM subjects WHERE subject = p_default_subject
  UNION ALL
  SELECT 'quota', subject, metric, period, NULL, NULL, quota_limit, time_zone, anchor_day,
         updated_at, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
    FROM quotas WHERE subject = ANY(array_append(p_subjects, p_default_subject))
     AND (p_metrics IS NULL OR metric = ANY(p_metrics))
  UNION ALL
  SELECT 'counter', subject, metric, period, last_sequence, NULL, NULL, NULL, NULL, NULL, used,
         reserved, period_start, period_end, last_reset_at, NULL, NULL, NULL, NULL, NULL, NULL,
         NULL
    FROM counters WHERE subject = ANY(p_subjects) AND (p_metrics IS NULL OR metric = ANY(p_metrics))
  UNION ALL
  SELECT 'usage', e.subject, e.metric, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
         NULL, NULL, NULL, e.amount, e.sequence, e.idempotency_key, e.data, NULL, NULL, NULL
    FROM unnest(p_key_subjects, p_keys) AS k(subject, key)
    JOIN ledger_events e ON e.subject = k.subject AND e.type = 'USAGE' AND e.idempotency_key = k.key
  UNION ALL
  SELECT 'hold', subject, metric, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
         NULL, NULL, amount, sequence, NULL, NULL, expires_at, reservation_id, holds
    FROM reservations WHERE p_lapsed_at IS NOT NULL AND subject = ANY(p_subjects)
     AND (p_metrics IS NULL OR metric = ANY(p_metrics)) AND expires_at <= p_lapsed_at;
END
$$;


-- Down Migration

-- The two functions as migrations …030 and …031 made them, and the roles that may run the new
-- one (a role made from the current app-role.sql has no other) allowed to run the old one.
DO $$
DECLARE
  grantee text;
BEGIN
  FOR grantee IN
    SELECT DISTINCT a.grantee::regrole::text
      FROM pg_proc p, aclexplode(p.proacl) a
     WHERE p.oid = 'quota_append_versioned(text[], int8[], text[], text[], int8[], text[], timestamptz[],
  timestamptz[], text[], text[], text[], jsonb, jsonb, timestamptz[], text[], text[], text[],
  int8[], int8[], timestamptz[], timestamptz[], timestamptz[], int8[], text[], int8[], int8[],
  text[], text, text)'::regprocedure
       AND a.privilege_type = 'EXECUTE' AND a.grantee <> 0
       AND a.grantee::regrole::text <> current_user
  LOOP
    EXECUTE format('GRANT EXECUTE ON FUNCTION quota_append(text[], int8[], text[], text[], int8[], text[], timestamptz[],
  timestamptz[], text[], text[], text[], jsonb, jsonb, timestamptz[], text[], text[], text[],
  int8[], int8[], timestamptz[], timestamptz[], timestamptz[], int8[], text[], int8[], int8[],
  text[]) TO %s', grantee);
  END LOOP;
END
$$;
CREATE OR REPLACE FUNCTION quota_read_subjects(
  p_subjects text[], p_metrics text[], p_key_subjects text[], p_keys text[],
  p_default_subject text, p_lapsed_at timestamptz
) RETURNS TABLE (
  kind text, subject text, metric text, period text, last_sequence int8, version text,
  quota_limit int8, time_zone text, anchor_day int, updated_at timestamptz, used int8,
  reserved int8, period_start timestamptz, period_end timestamptz, last_reset_at timestamptz,
  amount int8, sequence int8, idempotency_key text, data jsonb, expires_at timestamptz,
  reservation_id text, holds jsonb
) LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
BEGIN
  RETURN QUERY
  SELECT 'subject' AS kind, subject, NULL AS metric, NULL AS period, last_sequence,
         xmin::text AS version, NULL::int8 AS quota_limit, NULL AS time_zone,
         NULL::int AS anchor_day, NULL::timestamptz AS updated_at, NULL::int8 AS used,
         NULL::int8 AS reserved, NULL::timestamptz AS period_start,
         NULL::timestamptz AS period_end, NULL::timestamptz AS last_reset_at,
         NULL::int8 AS amount, NULL::int8 AS sequence, NULL AS idempotency_key,
         NULL::jsonb AS data, NULL::timestamptz AS expires_at, NULL AS reservation_id,
         NULL::jsonb AS holds
    FROM subjects WHERE subject = ANY(p_subjects)
  UNION ALL
  SELECT 'quota', subject, metric, period, NULL, NULL, quota_limit, time_zone, anchor_day,
         updated_at, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
    FROM quotas WHERE subject = ANY(array_append(p_subjects, p_default_subject))
     AND (p_metrics IS NULL OR metric = ANY(p_metrics))
  UNION ALL
  SELECT 'counter', subject, metric, period, last_sequence, NULL, NULL, NULL, NULL, NULL, used,
         reserved, period_start, period_end, last_reset_at, NULL, NULL, NULL, NULL, NULL, NULL,
         NULL
    FROM counters WHERE subject = ANY(p_subjects) AND (p_metrics IS NULL OR metric = ANY(p_metrics))
  UNION ALL
  SELECT 'usage', e.subject, e.metric, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
         NULL, NULL, NULL, e.amount, e.sequence, e.idempotency_key, e.data, NULL, NULL, NULL
    FROM unnest(p_key_subjects, p_keys) AS k(subject, key)
    JOIN ledger_events e ON e.subject = k.subject AND e.type = 'USAGE' AND e.idempotency_key = k.key
  UNION ALL
  SELECT 'hold', subject, metric, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
         NULL, NULL, amount, sequence, NULL, NULL, expires_at, reservation_id, holds
    FROM reservations WHERE p_lapsed_at IS NOT NULL AND subject = ANY(p_subjects)
     AND (p_metrics IS NULL OR metric = ANY(p_metrics)) AND expires_at <= p_lapsed_at;
END
$$;

CREATE OR REPLACE FUNCTION quota_append(
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

ALTER FUNCTION quota_read_subjects(text[], text[], text[], text[], text, timestamptz)
  SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION quota_append(text[], int8[], text[], text[], int8[], text[], timestamptz[],
  timestamptz[], text[], text[], text[], jsonb, jsonb, timestamptz[], text[], text[], text[],
  int8[], int8[], timestamptz[], timestamptz[], timestamptz[], int8[], text[], int8[], int8[],
  text[])
  SET plan_cache_mode = force_custom_plan;
DROP FUNCTION quota_append_versioned(text[], int8[], text[], text[], int8[], text[], timestamptz[],
  timestamptz[], text[], text[], text[], jsonb, jsonb, timestamptz[], text[], text[], text[],
  int8[], int8[], timestamptz[], timestamptz[], timestamptz[], int8[], text[], int8[], int8[],
  text[], text, text);
