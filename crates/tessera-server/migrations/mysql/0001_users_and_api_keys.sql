-- Server-owned data (users and API keys) on MySQL/MariaDB, shared by every
-- tessera instance that points at this database. Tracked in
-- tessera_server_migrations, not in sqlx's _sqlx_migrations, so the session
-- store's own migrations never collide.
--
-- Names are ASCII (the server allows letters, digits and . _ - @) compared
-- byte for byte (ascii_bin): MySQL's default collations are
-- case-insensitive, which would make "Alice" and "alice" one account here
-- and two on SQLite or PostgreSQL. MySQL commits DDL implicitly, so each
-- statement is re-runnable.
CREATE TABLE IF NOT EXISTS tessera_users (
    username            VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    password_hash       TEXT        NOT NULL,
    disabled            BIGINT      NOT NULL DEFAULT 0,
    created_at          BIGINT      NOT NULL,
    password_changed_at BIGINT      NOT NULL
) ENGINE = InnoDB;

CREATE TABLE IF NOT EXISTS tessera_api_keys (
    name       VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    -- SHA-256 of the key: the only form of it at rest.
    key_hash   VARBINARY(32) NOT NULL UNIQUE,
    created_at BIGINT        NOT NULL
) ENGINE = InnoDB;
