-- Server-owned data (users and API keys) on PostgreSQL, shared by every
-- tessera instance that points at this database. Tracked in
-- tessera_server_migrations, not in sqlx's _sqlx_migrations, so the session
-- store's own migrations never collide. Integers are BIGINT so every
-- backend reads them as the same 64-bit type.
CREATE TABLE IF NOT EXISTS tessera_users (
    username            TEXT    PRIMARY KEY NOT NULL,
    password_hash       TEXT    NOT NULL,
    disabled            BIGINT  NOT NULL DEFAULT 0,
    created_at          BIGINT  NOT NULL,
    password_changed_at BIGINT  NOT NULL
);

CREATE TABLE IF NOT EXISTS tessera_api_keys (
    name       TEXT    PRIMARY KEY NOT NULL,
    -- SHA-256 of the key: the only form of it at rest.
    key_hash   BYTEA   NOT NULL UNIQUE CHECK (octet_length(key_hash) = 32),
    created_at BIGINT  NOT NULL
);
