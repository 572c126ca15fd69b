-- Each user's recent security events (sign-ins, sign-outs, revocations and
-- by whom, password changes), for the account's "Security activity" page.
-- Bounded: the server keeps the newest rows per user and deletes rows past
-- their retention (src/activity.rs). `at` is milliseconds since the epoch.
CREATE TABLE IF NOT EXISTS tessera_security_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    username   TEXT    NOT NULL,
    at         INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    ip         TEXT,
    user_agent TEXT,
    detail     TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS tessera_security_events_user ON tessera_security_events (username, id);
CREATE INDEX IF NOT EXISTS tessera_security_events_at ON tessera_security_events (at);
