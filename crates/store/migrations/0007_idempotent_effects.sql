-- What a request with an IdempotencyKey created carries the key's id, so that a retry after a
-- crash (the effect made, the answer never recorded) finds it instead of making it again.
ALTER TABLE cards ADD COLUMN idempotency_id TEXT;
CREATE UNIQUE INDEX cards_by_idempotency ON cards (idempotency_id);
ALTER TABLE bulk_jobs ADD COLUMN idempotency_id TEXT;
CREATE UNIQUE INDEX bulk_jobs_by_idempotency ON bulk_jobs (idempotency_id);
