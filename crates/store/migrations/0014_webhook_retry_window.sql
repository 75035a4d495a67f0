-- A notification's retry window counts from its first attempt (not from when it was written: one
-- queued behind a failing notification of the same card would otherwise inherit its age), and a
-- resend opens a new window.
ALTER TABLE webhook_notifications ADD COLUMN first_attempt_at BIGINT;
