-- The directory: organisations, software statements, certificates, its access tokens,
-- the stack's own keys (sealed) and the shared use-once table for `jti`.
-- One dialect for SQLite and PostgreSQL: TEXT and BIGINT only.
CREATE TABLE organisations (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE software_statements (
    id TEXT PRIMARY KEY,
    organisation_id TEXT NOT NULL REFERENCES organisations (id),
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX software_statements_by_organisation ON software_statements (organisation_id);

CREATE TABLE certificates (
    id TEXT PRIMARY KEY,
    organisation_id TEXT NOT NULL REFERENCES organisations (id),
    software_statement_id TEXT REFERENCES software_statements (id),
    certificate_type TEXT NOT NULL,
    key_id TEXT NOT NULL,
    thumbprint TEXT NOT NULL UNIQUE,
    serial_hex TEXT NOT NULL UNIQUE,
    chain_pem TEXT NOT NULL,
    not_before BIGINT NOT NULL,
    not_after BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX certificates_by_owner ON certificates (organisation_id, software_statement_id);

CREATE TABLE access_tokens (
    token_hash TEXT PRIMARY KEY,
    issuer TEXT NOT NULL,
    client_id TEXT NOT NULL,
    organisation_id TEXT NOT NULL,
    software_statement_id TEXT NOT NULL,
    thumbprint TEXT NOT NULL,
    scope TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX access_tokens_by_expiry ON access_tokens (expires_at);

CREATE TABLE used_jti (
    id TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX used_jti_by_expiry ON used_jti (expires_at);

CREATE TABLE key_material (
    name TEXT PRIMARY KEY,
    sealed TEXT NOT NULL,
    certificate_pem TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
