-- Events to the programme manager (DESIGN.md section 11): an outbox of webhook notifications,
-- written in the same transaction as the change they announce (so none is lost and none is
-- sent for a change that did not happen), numbered per card for in-order delivery, leased by one
-- instance's worker at a time, retried with backoff until delivered or given up.
ALTER TABLE cards ADD COLUMN notification_seq BIGINT NOT NULL DEFAULT 0;

CREATE TABLE webhook_notifications (
    id TEXT PRIMARY KEY,
    organisation_id TEXT NOT NULL,
    public_token TEXT NOT NULL,
    sequence BIGINT NOT NULL,
    url TEXT NOT NULL,
    event_code TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    last_error TEXT,
    lease TEXT,
    lease_until BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    delivered_at BIGINT
);
CREATE UNIQUE INDEX webhook_notifications_by_card ON webhook_notifications (public_token, sequence);
CREATE INDEX webhook_notifications_due ON webhook_notifications (status, next_attempt_at);
CREATE INDEX webhook_notifications_by_organisation ON webhook_notifications (organisation_id, status);
