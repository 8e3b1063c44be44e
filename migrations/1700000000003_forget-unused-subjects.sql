-- Up Migration

-- A writer of a subject nobody has written before creates its row, because locking that row is
-- what serializes two first writers. When the calls of that transaction record nothing (a
-- denial, a DRY_RUN, a metric without a quota), the row must not stay behind as a trace of
-- failed calls. The service's role has no DELETE on subjects (ops/db/app-role.sql): it may only
-- remove rows that never got an event, through this function, which runs as its owner.
CREATE FUNCTION quota_forget_unused_subjects(names text[]) RETURNS void
  LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
  DELETE FROM subjects WHERE subject = ANY(names) AND last_sequence = 0;
$$;
REVOKE ALL ON FUNCTION quota_forget_unused_subjects(text[]) FROM PUBLIC;

-- Down Migration

DROP FUNCTION quota_forget_unused_subjects(text[]);
