-- tessera lifetime classes, SQLite: which timeouts a session follows
-- ('default', or 'remember' for "keep me signed in"; see
-- tessera::policy::SessionClass). Rows stored before this migration are of
-- the default class, which is what they were created under.
ALTER TABLE tessera_sessions ADD COLUMN session_class TEXT NOT NULL DEFAULT 'default'
    CHECK (session_class IN ('default', 'remember'));
