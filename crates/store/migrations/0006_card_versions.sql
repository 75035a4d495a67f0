-- Card writes are conditional on the version they read (optimistic concurrency): a write that
-- lost a race re-reads the card and decides again, so no write overwrites another's.
ALTER TABLE cards ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
