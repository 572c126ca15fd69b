-- Sign-in limiter counters shared by every instance on this database
-- (crates/tessera-server/src/ratelimit/shared.rs): one row per user name or
-- client network, a fixed window ending at window_ends (ms since the epoch).
CREATE TABLE IF NOT EXISTS tessera_login_counters (
    counter_key VARCHAR(300) PRIMARY KEY NOT NULL,
    hits        BIGINT       NOT NULL,
    window_ends BIGINT       NOT NULL
);
CREATE INDEX IF NOT EXISTS tessera_login_counters_ends ON tessera_login_counters (window_ends);
