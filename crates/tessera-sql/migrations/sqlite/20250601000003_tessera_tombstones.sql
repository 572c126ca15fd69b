-- tessera tombstones, SQLite: why an ended session ended (signed out,
-- revoked and by what, expired), keyed by the SHA-256 of its token (never
-- the token), until the session's absolute deadline. Nothing secret: a
-- reason code and a time. See tessera::ended.
CREATE TABLE tessera_tombstones (
    hash       BLOB    NOT NULL PRIMARY KEY CHECK (length(hash) = 32),
    reason     TEXT    NOT NULL CHECK (length(reason) <= 32),
    -- The session's absolute deadline: the tombstone is dropped then.
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;

-- purge_expired: the oldest first.
CREATE INDEX tessera_tombstones_expires_at ON tessera_tombstones (expires_at);
