-- One counter that every change to a token's standing bumps (a token or certificate revoked, a
-- client registered or deleted), in the same transaction as the change: each instance keeps the
-- standing it has read in memory and drops it when the counter moves (it looks at most once a
-- second), so no cached standing outlives a change by more than a second.
CREATE TABLE trust_changes (
    id BIGINT PRIMARY KEY,
    version BIGINT NOT NULL
);
INSERT INTO trust_changes (id, version) VALUES (1, 0);
