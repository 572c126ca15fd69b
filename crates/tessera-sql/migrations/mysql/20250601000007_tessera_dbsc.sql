-- tessera device-bound sessions (W3C DBSC), mysql: see tessera::dbsc.
--
-- A binding ties a session (its public handle) to the public key of a
-- device; it expires with the session's absolute deadline. The public key
-- is not secret. Challenges and bound cookies are stored by the SHA-256
-- of their value (hex), never the value, so a dump yields no cookie that
-- works.
--
-- Text columns are ASCII with a binary collation: handles and digests are
-- case-sensitive, which the default collations are not.
CREATE TABLE tessera_dbsc_bindings (
    handle     VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    session_id VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    -- RFC 7638 JWK thumbprint of jwk.
    thumbprint VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    -- The JWK's required members, canonical JSON (RFC 7638 §3).
    jwk        TEXT CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    bound_at   BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
) ENGINE = InnoDB;

-- kind: 'c' challenge (single use: consumed by one DELETE), 'k' bound
-- cookie (checked until expires_at).
CREATE TABLE tessera_dbsc_secrets (
    handle     VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    kind       CHAR(1) CHARACTER SET ascii COLLATE ascii_bin NOT NULL CHECK (kind IN ('c', 'k')),
    digest     VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (handle, kind, digest)
) ENGINE = InnoDB;

-- Purging expired rows: the oldest expiries first.
CREATE INDEX tessera_dbsc_bindings_expires_at ON tessera_dbsc_bindings (expires_at);
CREATE INDEX tessera_dbsc_secrets_expires_at ON tessera_dbsc_secrets (expires_at);
