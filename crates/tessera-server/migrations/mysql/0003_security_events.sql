-- Each user's recent security events (sign-ins, sign-outs, revocations and
-- by whom, password changes), for the account's "Security activity" page.
-- Bounded: the server keeps the newest rows per user and deletes rows past
-- their retention (src/activity.rs). `at` is milliseconds since the epoch.
-- User names compare byte for byte (ascii_bin), as in tessera_users.
CREATE TABLE IF NOT EXISTS tessera_security_events (
    id         BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    username   VARCHAR(64)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    at         BIGINT       NOT NULL,
    kind       VARCHAR(32)  NOT NULL,
    ip         VARCHAR(64),
    user_agent VARCHAR(256),
    detail     VARCHAR(256) NOT NULL DEFAULT '',
    INDEX tessera_security_events_user (username, id),
    INDEX tessera_security_events_at (at)
) ENGINE = InnoDB;
