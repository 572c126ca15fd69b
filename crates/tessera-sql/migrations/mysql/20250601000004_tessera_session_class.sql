-- tessera lifetime classes, MySQL 8 / MariaDB 10.6+: which timeouts a
-- session follows ('default', or 'remember' for "keep me signed in"; see
-- tessera::policy::SessionClass). Rows stored before this migration are of
-- the default class, which is what they were created under. Only tessera
-- writes it, and the decoder refuses any value but those two as corrupt.
ALTER TABLE tessera_sessions ADD COLUMN session_class VARCHAR(16)
    CHARACTER SET utf8mb4 NOT NULL DEFAULT 'default';
