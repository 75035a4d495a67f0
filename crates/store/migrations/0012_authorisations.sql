-- The sandbox's simulated card network (DESIGN.md section 11): authorisations and their
-- life (Pending, then Cleared or Reversed; Declined from the start). The hold of a pending one
-- is in the card's pending_minor; its state changes in the same transaction as the posting that
-- releases or settles the hold, and only from the state it was decided on.
CREATE TABLE card_authorisations (
    id TEXT PRIMARY KEY,
    public_token TEXT NOT NULL,
    organisation_id TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    merchant TEXT NOT NULL,
    state TEXT NOT NULL,
    response_code TEXT NOT NULL,
    auth_code TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX card_authorisations_by_card ON card_authorisations (public_token);
