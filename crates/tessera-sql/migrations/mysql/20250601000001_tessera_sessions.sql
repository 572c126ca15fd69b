-- tessera session store, MySQL 8 / MariaDB 10.6+ (InnoDB).
--
-- Keyed by the SHA-256 of the token (never the token itself: DESIGN
-- invariant 2). Deadlines are BIGINT milliseconds since the Unix epoch, so
-- expiry checks and the sweeper are plain integer comparisons on an index.
--
-- handle and user_id are VARBINARY on purpose: MySQL's default collations
-- compare text case-insensitively and (MariaDB) ignore trailing spaces, so
-- `user_id = 'Alice '` would match 'alice' and list or revoke another
-- user's sessions. Binary columns compare byte for byte.
CREATE TABLE tessera_sessions (
    hash              BINARY(32)      NOT NULL PRIMARY KEY,
    handle            VARBINARY(64)   NOT NULL,
    user_id           VARBINARY(1024),
    data              MEDIUMTEXT      CHARACTER SET utf8mb4 NOT NULL,
    created_at        BIGINT          NOT NULL,
    last_seen_at      BIGINT          NOT NULL,
    authenticated_at  BIGINT,
    idle_deadline     BIGINT          NOT NULL,
    absolute_deadline BIGINT          NOT NULL,
    -- min(idle_deadline, absolute_deadline): when the session ends without
    -- activity. Liveness checks and the sweeper use this one column.
    next_deadline     BIGINT          NOT NULL,
    version           BIGINT          NOT NULL,
    csrf_secret       BINARY(32)      NOT NULL,
    client_ip         TEXT            CHARACTER SET utf8mb4,
    user_agent        TEXT            CHARACTER SET utf8mb4,
    UNIQUE KEY tessera_sessions_handle (handle),
    -- list_by_user / delete_by_user, already in listing order.
    KEY tessera_sessions_user (user_id, created_at),
    -- purge_expired: the oldest deadlines first.
    KEY tessera_sessions_next_deadline (next_deadline)
) ENGINE = InnoDB;
