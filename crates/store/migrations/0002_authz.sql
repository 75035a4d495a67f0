-- The authorization server: registered clients (RFC 7591/7592), its token signing keys
-- (sealed, with rotation times) and revoked access tokens (RFC 7009), shared by every instance.
CREATE TABLE oauth_clients (
    client_id TEXT PRIMARY KEY,
    software_id TEXT NOT NULL UNIQUE,
    organisation_id TEXT NOT NULL,
    metadata TEXT NOT NULL,
    registration_token_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE token_signing_keys (
    kid TEXT PRIMARY KEY,
    sealed TEXT NOT NULL,
    public_jwk TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    activates_at BIGINT NOT NULL,
    retires_at BIGINT
);

CREATE TABLE revoked_tokens (
    jti TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT NOT NULL
);
CREATE INDEX revoked_tokens_by_expiry ON revoked_tokens (expires_at);
