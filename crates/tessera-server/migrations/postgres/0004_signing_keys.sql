-- The access-token signing keys when the store is shared (src/keys.rs):
-- one row, the whole key set as a document whose private keys are sealed
-- under the key-encryption key (AES-256-GCM; never stored in clear), and a
-- version that every change compares and raises, so concurrent rotations
-- on two instances cannot both win.
CREATE TABLE IF NOT EXISTS tessera_signing_keys (
    id       SMALLINT PRIMARY KEY CHECK (id = 1),
    version  BIGINT   NOT NULL,
    document TEXT     NOT NULL
);
