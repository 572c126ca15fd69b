-- tessera session-cap locks, MySQL/MariaDB: one row per user who signed in
-- under a per-user session cap. A capped creation first writes the user's
-- row (INSERT ... ON DUPLICATE KEY UPDATE), which holds an exclusive row
-- lock until its transaction ends, so the count, the evictions and the
-- insert of racing sign-ins of one user run one after the other. A lock on
-- the user's session rows would not do: it cannot lock a row a concurrent
-- transaction is about to insert without gap locks, which deadlock.
-- Nothing secret: the user id only.
CREATE TABLE tessera_session_cap_locks (
    user_id VARBINARY(1024) NOT NULL PRIMARY KEY
) ENGINE = InnoDB;
