-- The Cards API: cards (PAN, CVV and PIN sealed under the master key), idempotency records and
-- durable bulk creation jobs.
CREATE TABLE cards (
    public_token TEXT PRIMARY KEY,
    organisation_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    details TEXT NOT NULL,
    pan_sealed TEXT NOT NULL,
    cvv_sealed TEXT NOT NULL,
    pin_sealed TEXT,
    status_code TEXT NOT NULL,
    status_updated TEXT NOT NULL,
    cvv_blocked BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX cards_by_organisation ON cards (organisation_id);

CREATE TABLE idempotency_keys (
    id TEXT PRIMARY KEY,
    endpoint TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status BIGINT NOT NULL,
    response TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);

CREATE TABLE bulk_jobs (
    id TEXT PRIMARY KEY,
    organisation_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    request TEXT NOT NULL,
    quantity BIGINT NOT NULL,
    status TEXT NOT NULL,
    public_tokens TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX bulk_jobs_by_status ON bulk_jobs (status);
