-- tessera session store, SQLite.
--
-- Keyed by the SHA-256 of the token (never the token itself: DESIGN
-- invariant 2). Deadlines are INTEGER milliseconds since the Unix epoch, so
-- expiry checks and the sweeper are plain integer comparisons on an index.
CREATE TABLE tessera_sessions (
    hash              BLOB    NOT NULL PRIMARY KEY CHECK (length(hash) = 32),
    handle            TEXT    NOT NULL UNIQUE,
    user_id           TEXT,
    data              TEXT    NOT NULL,
    created_at        INTEGER NOT NULL,
    last_seen_at      INTEGER NOT NULL,
    authenticated_at  INTEGER,
    idle_deadline     INTEGER NOT NULL,
    absolute_deadline INTEGER NOT NULL,
    -- min(idle_deadline, absolute_deadline): when the session ends without
    -- activity. Liveness checks and the sweeper use this one column.
    next_deadline     INTEGER NOT NULL,
    version           INTEGER NOT NULL,
    csrf_secret       BLOB    NOT NULL CHECK (length(csrf_secret) = 32),
    client_ip         TEXT,
    user_agent        TEXT
) WITHOUT ROWID;

-- list_by_user / delete_by_user, already in listing order.
CREATE INDEX tessera_sessions_user ON tessera_sessions (user_id, created_at);
-- purge_expired: the oldest deadlines first.
CREATE INDEX tessera_sessions_next_deadline ON tessera_sessions (next_deadline);
