-- tessera device-bound sessions (W3C DBSC), sqlite: see tessera::dbsc.
--
-- A binding ties a session (its public handle) to the public key of a
-- device; it expires with the session's absolute deadline. The public key
-- is not secret. Challenges and bound cookies are stored by the SHA-256
-- of their value (hex), never the value, so a dump yields no cookie that
-- works.
CREATE TABLE tessera_dbsc_bindings (
    handle     TEXT NOT NULL PRIMARY KEY,
    session_id TEXT NOT NULL,
    -- RFC 7638 JWK thumbprint of jwk.
    thumbprint TEXT NOT NULL,
    -- The JWK's required members, canonical JSON (RFC 7638 §3).
    jwk        TEXT NOT NULL,
    bound_at   INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;

-- kind: 'c' challenge (single use: consumed by one DELETE), 'k' bound
-- cookie (checked until expires_at).
CREATE TABLE tessera_dbsc_secrets (
    handle     TEXT NOT NULL,
    kind       CHAR(1) NOT NULL CHECK (kind IN ('c', 'k')),
    digest     TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (handle, kind, digest)
) WITHOUT ROWID;

-- Purging expired rows: the oldest expiries first.
CREATE INDEX tessera_dbsc_bindings_expires_at ON tessera_dbsc_bindings (expires_at);
CREATE INDEX tessera_dbsc_secrets_expires_at ON tessera_dbsc_secrets (expires_at);
