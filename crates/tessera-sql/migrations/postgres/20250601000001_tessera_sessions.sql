-- tessera session store, PostgreSQL.
--
-- Keyed by the SHA-256 of the token (never the token itself: DESIGN
-- invariant 2). Deadlines are BIGINT milliseconds since the Unix epoch, so
-- expiry checks and the sweeper are plain integer comparisons on an index.
CREATE TABLE tessera_sessions (
    hash              BYTEA   NOT NULL PRIMARY KEY CHECK (octet_length(hash) = 32),
    handle            TEXT    NOT NULL UNIQUE,
    user_id           TEXT,
    data              TEXT    NOT NULL,
    created_at        BIGINT  NOT NULL,
    last_seen_at      BIGINT  NOT NULL,
    authenticated_at  BIGINT,
    idle_deadline     BIGINT  NOT NULL,
    absolute_deadline BIGINT  NOT NULL,
    -- min(idle_deadline, absolute_deadline): when the session ends without
    -- activity. Liveness checks and the sweeper use this one column.
    next_deadline     BIGINT  NOT NULL,
    version           BIGINT  NOT NULL,
    csrf_secret       BYTEA   NOT NULL CHECK (octet_length(csrf_secret) = 32),
    client_ip         TEXT,
    user_agent        TEXT
);

-- list_by_user / delete_by_user, already in listing order.
CREATE INDEX tessera_sessions_user ON tessera_sessions (user_id, created_at);
-- purge_expired: the oldest deadlines first.
CREATE INDEX tessera_sessions_next_deadline ON tessera_sessions (next_deadline);
