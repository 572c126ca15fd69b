-- tessera refresh-token families, PostgreSQL (RFC 9700 §4.14.2 rotation
-- with reuse detection; see tessera::refresh).
--
-- Keyed by the SHA-256 of the refresh token, never the token (DESIGN
-- invariant 2). `sealed_child` is the child token encrypted with a key
-- derived from the parent's secret, which the store never sees, so a dump
-- yields nothing usable. A row is unused (all three `used` columns NULL)
-- or used (all three set); the CHECK refuses anything in between.
CREATE TABLE tessera_refresh_tokens (
    hash         BYTEA   NOT NULL PRIMARY KEY CHECK (octet_length(hash) = 32),
    -- The family: the public handle of the session the token belongs to.
    family       TEXT    NOT NULL,
    user_id      TEXT,
    issued_at    BIGINT  NOT NULL,
    -- The session's absolute deadline: the token is dead from then on.
    expires_at   BIGINT  NOT NULL,
    used_at      BIGINT,
    child_hash   BYTEA   CHECK (octet_length(child_hash) = 32),
    sealed_child BYTEA   CHECK (octet_length(sealed_child) = 32),
    CHECK ((used_at IS NULL) = (child_hash IS NULL)
       AND (used_at IS NULL) = (sealed_child IS NULL))
);

-- delete_refresh_family (revocation of a session and its tokens).
CREATE INDEX tessera_refresh_tokens_family ON tessera_refresh_tokens (family);
-- purge_expired: the oldest expiries first.
CREATE INDEX tessera_refresh_tokens_expires_at ON tessera_refresh_tokens (expires_at);
