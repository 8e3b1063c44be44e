-- Up Migration

-- The id of the transaction that wrote each event, so that followers can be handed events in an
-- order that never lets a later commit slip in behind what they have already read (see
-- src/ledger/list-events.ts). Positions alone cannot: one is taken at insert, not at commit.
--
-- Rows written before this migration get 0: they all committed before it ran, so they are older
-- than any transaction still in progress and come first, in position order. A constant default
-- makes the ADD COLUMN a catalog change (no table rewrite); only new rows use the function.
ALTER TABLE ledger_events ADD COLUMN IF NOT EXISTS xid xid8 NOT NULL DEFAULT '0';
ALTER TABLE ledger_events ALTER COLUMN xid SET DEFAULT pg_current_xact_id();

-- Followers page by (xid, position): this index serves both the cursor and the order. IF NOT
-- EXISTS: on a big ledger an operator builds it CONCURRENTLY before deploying (README).
CREATE INDEX IF NOT EXISTS ledger_events_feed ON ledger_events (xid, position);

-- Down Migration

DROP INDEX ledger_events_feed;
ALTER TABLE ledger_events DROP COLUMN xid;
