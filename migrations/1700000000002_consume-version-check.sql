-- Up Migration

-- Fails the statement it is called from, with serialization_failure (40001), unless `ok`.
-- The group-committed Consume writes in one autocommitted statement whose CTEs check that no
-- other writer has touched its subjects since it read them; this turns "someone did" into an
-- error that rolls the whole statement back, after which it redoes the work under locks.
CREATE FUNCTION quota_expect(ok boolean, what text) RETURNS boolean
  LANGUAGE plpgsql AS $$
BEGIN
  IF NOT ok THEN
    RAISE EXCEPTION 'concurrent change: %', what USING ERRCODE = 'serialization_failure';
  END IF;
  RETURN true;
END
$$;

-- Down Migration

DROP FUNCTION quota_expect(boolean, text);
