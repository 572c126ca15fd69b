-- tessera kill switches, SQLite: the not-before times (see
-- tessera::not_before). scope 'g' is the global one (user_id ''), scope
-- 'u' a user's. A session created before the not-before that applies to
-- it is refused by the same statement that loads it (a LEFT JOIN on this
-- table's primary key). One row per user ever switched off, plus one:
-- bounded by the number of users. Values only move forward.
CREATE TABLE tessera_not_before (
    scope   TEXT    NOT NULL CHECK (scope IN ('g', 'u')),
    user_id TEXT    NOT NULL,
    -- Sessions created before this instant (ms since the epoch) are refused.
    at      INTEGER NOT NULL,
    -- The cause reported with `revoked` (tessera::ended::Revocation code).
    reason  TEXT    NOT NULL CHECK (length(reason) <= 32),
    PRIMARY KEY (scope, user_id)
) WITHOUT ROWID;
