-- Server-owned data (users and API keys) on SQLite, kept beside the session table in
-- the same SQLite file. Tracked in tessera_server_migrations, not in sqlx's
-- _sqlx_migrations, so the session store's own migrations never collide.
CREATE TABLE IF NOT EXISTS tessera_users (
    username            TEXT    PRIMARY KEY NOT NULL,
    password_hash       TEXT    NOT NULL,
    disabled            INTEGER NOT NULL DEFAULT 0,
    created_at          INTEGER NOT NULL,
    password_changed_at INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS tessera_api_keys (
    name       TEXT    PRIMARY KEY NOT NULL,
    key_hash   BLOB    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
