-- The card ledger (DESIGN.md section 11): integer minor units, never floats. A card's settled
-- balance and its pending holds (zero or negative) sit on the card's row, so that one
-- conditional UPDATE decides and applies a posting atomically at every instance (no overdraft
-- can slip between a read and a write); every posting is also a line of card_transactions,
-- numbered per card by ledger_line, in the same transaction.
ALTER TABLE cards ADD COLUMN balance_minor BIGINT NOT NULL DEFAULT 0;
ALTER TABLE cards ADD COLUMN pending_minor BIGINT NOT NULL DEFAULT 0;
ALTER TABLE cards ADD COLUMN ledger_line BIGINT NOT NULL DEFAULT 0;

CREATE TABLE card_transactions (
    id TEXT PRIMARY KEY,
    public_token TEXT NOT NULL,
    organisation_id TEXT NOT NULL,
    line BIGINT NOT NULL,
    type_code TEXT NOT NULL,
    status_code TEXT NOT NULL,
    transaction_type TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    actual_balance BIGINT NOT NULL,
    available_balance BIGINT NOT NULL,
    description TEXT NOT NULL,
    note TEXT,
    link TEXT,
    processing_code TEXT NOT NULL,
    request_id TEXT,
    leg BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX card_transactions_by_line ON card_transactions (public_token, line);
-- A request with an IdempotencyKey posts each leg once, even when a retry takes over its claim.
CREATE UNIQUE INDEX card_transactions_by_request ON card_transactions (request_id, leg);
