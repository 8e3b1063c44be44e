-- The role the service runs as in production: it may read and append to the ledger, never
-- change or delete it. Run this as the schema owner after the migrations, with your own
-- password, then give the service DATABASE_URL as quota_app and
-- QUOTA_MIGRATION_DATABASE_URL as the owner.
CREATE ROLE quota_app LOGIN PASSWORD 'change-me';
GRANT USAGE ON SCHEMA public TO quota_app;
-- Events, counters, quota settings and open holds are written only by quota_append_versioned
-- (the one append, running as the owner), which checks each subject's expected sequence and
-- version: the role has no INSERT on any of them.
GRANT EXECUTE ON FUNCTION quota_append_versioned(text[], int8[], text[], text[], int8[], text[],
  timestamptz[], timestamptz[], text[], text[], text[], jsonb, jsonb, timestamptz[], text[],
  text[], text[], int8[], int8[], timestamptz[], timestamptz[], timestamptz[], int8[], text[],
  int8[], int8[], text[], text, text) TO quota_app;
GRANT SELECT ON ledger_events TO quota_app;
-- Counters are a projection, rebuilt from the ledger: repair removes stray ones (DELETE); the
-- reset sweep locks the due ones (SELECT ... FOR UPDATE needs UPDATE).
GRANT SELECT, UPDATE, DELETE ON counters TO quota_app;
-- A writer creates a subject's row and locks it; repair moves its version (UPDATE). No DELETE:
-- rows that never got an event go through this function only.
GRANT SELECT, INSERT, UPDATE ON subjects TO quota_app;
GRANT EXECUTE ON FUNCTION quota_forget_unused_subjects(text[]) TO quota_app;
GRANT SELECT ON quotas TO quota_app;
GRANT SELECT ON reservations TO quota_app;
GRANT SELECT, INSERT, UPDATE ON reset_runs TO quota_app;
-- Checkpoints of the hash chain: heads move forward (UPDATE), checkpoints are only added.
GRANT SELECT, INSERT, UPDATE ON ledger_checkpoint_heads TO quota_app;
GRANT SELECT, INSERT ON ledger_checkpoints TO quota_app;
GRANT SELECT ON pgmigrations TO quota_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO quota_app;
