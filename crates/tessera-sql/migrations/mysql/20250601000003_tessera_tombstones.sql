-- tessera tombstones, MySQL/MariaDB: why an ended session ended (signed
-- out, revoked and by what, expired), keyed by the SHA-256 of its token
-- (never the token), until the session's absolute deadline. Nothing
-- secret: a reason code and a time. See tessera::ended.
CREATE TABLE tessera_tombstones (
    hash       BINARY(32)     NOT NULL PRIMARY KEY,
    reason     VARBINARY(32)  NOT NULL,
    -- The session's absolute deadline: the tombstone is dropped then.
    expires_at BIGINT         NOT NULL,
    -- purge_expired: the oldest first.
    KEY tessera_tombstones_expires_at (expires_at)
) ENGINE = InnoDB;
