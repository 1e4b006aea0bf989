-- auth: when a user proved their address; one-use tokens sent by email (verify the address,
-- reset the password, confirm a new address), kept only as SHA-256 hashes.
ALTER TABLE users ADD COLUMN email_verified_at BIGINT;
CREATE TABLE auth_tokens (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    purpose     TEXT   NOT NULL CHECK (purpose IN ('verify_email', 'reset_password', 'change_email')),
    token_hash  TEXT   NOT NULL UNIQUE,
    -- change_email: the address to switch to.
    new_email   TEXT,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);
CREATE INDEX auth_tokens_user ON auth_tokens(user_id, purpose, created_at);
