-- The access-token signing keys in the shared store (src/keys/shared.rs).
-- A SQLite server database keeps its keys in a directory instead; the
-- table exists so that every backend has the same schema.
CREATE TABLE IF NOT EXISTS tessera_signing_keys (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    version  INTEGER NOT NULL,
    document TEXT    NOT NULL
);
