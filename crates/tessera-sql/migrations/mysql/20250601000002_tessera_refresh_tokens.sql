-- tessera refresh-token families, MySQL 8 / MariaDB 10.6+ (InnoDB)
-- (RFC 9700 §4.14.2 rotation with reuse detection; see tessera::refresh).
--
-- Keyed by the SHA-256 of the refresh token, never the token (DESIGN
-- invariant 2). `sealed_child` is the child token encrypted with a key
-- derived from the parent's secret, which the store never sees, so a dump
-- yields nothing usable. A row is unused (all three `used` columns NULL)
-- or used (all three set); the CHECK refuses anything in between.
--
-- family and user_id are VARBINARY for the same reason as in
-- tessera_sessions: the default collations compare case- and
-- trailing-space-insensitively, which would let one family's revocation
-- reach another's tokens.
CREATE TABLE tessera_refresh_tokens (
    hash         BINARY(32)      NOT NULL PRIMARY KEY,
    -- The family: the public handle of the session the token belongs to.
    family       VARBINARY(64)   NOT NULL,
    user_id      VARBINARY(1024),
    issued_at    BIGINT          NOT NULL,
    -- The session's absolute deadline: the token is dead from then on.
    expires_at   BIGINT          NOT NULL,
    used_at      BIGINT,
    child_hash   BINARY(32),
    sealed_child BINARY(32),
    CONSTRAINT tessera_refresh_tokens_used CHECK (
        (used_at IS NULL) = (child_hash IS NULL)
        AND (used_at IS NULL) = (sealed_child IS NULL)),
    -- delete_refresh_family (revocation of a session and its tokens).
    KEY tessera_refresh_tokens_family (family),
    -- purge_expired: the oldest expiries first.
    KEY tessera_refresh_tokens_expires_at (expires_at)
) ENGINE = InnoDB;
