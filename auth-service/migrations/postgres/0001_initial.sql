-- auth-service schema (PostgreSQL). Keep in step with migrations/sqlite/0001_initial.sql.
-- Times are unix epoch milliseconds; ids are UUID text.

CREATE TABLE users (
    id               TEXT    PRIMARY KEY NOT NULL,
    email            TEXT    NOT NULL,               -- as registered (trimmed)
    email_normalized TEXT    NOT NULL UNIQUE,        -- lower-cased: duplicates are case-insensitive
    password_hash    TEXT    NOT NULL,               -- argon2id PHC string
    created_at_ms    BIGINT  NOT NULL
);

CREATE TABLE user_roles (
    user_id       TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role          TEXT   NOT NULL,
    granted_at_ms BIGINT NOT NULL,
    PRIMARY KEY (user_id, role)
);

CREATE TABLE signing_keys (
    kid             TEXT   PRIMARY KEY NOT NULL,     -- RFC 7638 JWK thumbprint
    alg             TEXT   NOT NULL,                 -- RS256 | ES256 | EdDSA
    private_key_pem TEXT   NOT NULL,                 -- PKCS#8 PEM
    public_jwk      TEXT   NOT NULL,                 -- JSON
    created_at_ms   BIGINT NOT NULL,
    retired_at_ms   BIGINT                           -- NULL while active
);

CREATE TABLE refresh_tokens (
    id            TEXT   PRIMARY KEY NOT NULL,
    token_hash    TEXT   NOT NULL UNIQUE,            -- hex SHA-256 of the opaque token
    family_id     TEXT   NOT NULL,                   -- all tokens from one login
    parent_id     TEXT,                              -- the token this one replaced
    user_id       TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    issued_at_ms  BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    used_at_ms    BIGINT,                            -- set when rotated
    revoked_at_ms BIGINT                             -- set on logout / reuse detection
);

CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at_ms);
