-- Sign-in limiter counters shared by every instance on this database
-- (crates/tessera-server/src/ratelimit/shared.rs): one row per user name or
-- client network, a fixed window ending at window_ends (ms since the epoch).
-- Binary collation: keys compare byte for byte.
CREATE TABLE IF NOT EXISTS tessera_login_counters (
    counter_key VARCHAR(300) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin PRIMARY KEY NOT NULL,
    hits        BIGINT       NOT NULL,
    window_ends BIGINT       NOT NULL,
    INDEX tessera_login_counters_ends (window_ends)
);
