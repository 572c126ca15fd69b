-- tessera kill switches, MySQL/MariaDB: the not-before times (see
-- tessera::not_before). scope 'g' is the global one (user_id ''), scope
-- 'u' a user's. A session created before the not-before that applies to
-- it is refused by the same statement that loads it (a LEFT JOIN on this
-- table's primary key). One row per user ever switched off, plus one:
-- bounded by the number of users. Values only move forward.
-- user_id is VARBINARY like tessera_sessions.user_id: compared byte for
-- byte, never through a case- or space-insensitive collation.
CREATE TABLE tessera_not_before (
    scope   CHAR(1) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    user_id VARBINARY(1024) NOT NULL,
    -- Sessions created before this instant (ms since the epoch) are refused.
    at      BIGINT  NOT NULL,
    -- The cause reported with `revoked` (tessera::ended::Revocation code).
    -- ascii_general_ci, not _bin: MySQL reports _bin columns as binary, and
    -- the codes are fixed lower-case ASCII words.
    reason  VARCHAR(32) CHARACTER SET ascii COLLATE ascii_general_ci NOT NULL,
    PRIMARY KEY (scope, user_id)
) ENGINE = InnoDB;
