//! The statements, in one place.

const COLUMNS: &str = "hash, handle, user_id, data, created_at, last_seen_at, \
    authenticated_at, idle_deadline, absolute_deadline, version, csrf_secret, client_ip, \
    user_agent, session_class";
const SET_MUTABLE: &str = "data = $1, created_at = $2, last_seen_at = $3, \
    authenticated_at = $4, idle_deadline = $5, absolute_deadline = $6, next_deadline = $7, \
    version = $8, csrf_secret = $9, client_ip = $10, user_agent = $11, session_class = $12";

pub(super) fn select_by_hash() -> String {
    format!("SELECT {COLUMNS} FROM tessera_sessions WHERE hash = $1")
}
pub(super) fn select_for_update() -> String {
    format!("SELECT {COLUMNS} FROM tessera_sessions WHERE hash = $1 FOR UPDATE")
}
pub(super) fn list_by_user() -> String {
    // `COLLATE "C"`: ties in creation time are ordered by the handle's
    // bytes, as every other store does, whatever the database locale.
    format!(
        "SELECT {COLUMNS} FROM tessera_sessions WHERE user_id = $1 AND next_deadline > $2 \
         ORDER BY created_at, handle COLLATE \"C\""
    )
}
pub(super) const NEXT_DEADLINE: &str = "SELECT next_deadline FROM tessera_sessions WHERE hash = $1";
pub(super) const INSERT: &str = "INSERT INTO tessera_sessions (hash, handle, user_id, data, \
    created_at, last_seen_at, authenticated_at, idle_deadline, absolute_deadline, \
    next_deadline, version, csrf_secret, client_ip, user_agent, session_class) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)";
pub(super) fn cas_update() -> String {
    format!(
        "UPDATE tessera_sessions SET {SET_MUTABLE} \
         WHERE hash = $13 AND version = $14 AND next_deadline > $15"
    )
}
pub(super) fn update_locked() -> String {
    format!("UPDATE tessera_sessions SET {SET_MUTABLE} WHERE hash = $13")
}
pub(super) const ROTATE: &str = "UPDATE tessera_sessions SET hash = $1, handle = $2, \
    user_id = $3, data = $4, created_at = $5, last_seen_at = $6, authenticated_at = $7, \
    idle_deadline = $8, absolute_deadline = $9, next_deadline = $10, version = $11, \
    csrf_secret = $12, client_ip = $13, user_agent = $14, session_class = $15 \
    WHERE hash = $16 AND version = $17 AND next_deadline > $18";
pub(super) const DELETE: &str = "DELETE FROM tessera_sessions WHERE hash = $1";
/// Serializes the capped creations of one user for the rest of the
/// transaction (a transaction-level advisory lock on a hash of the
/// user id; a collision only serializes two users' sign-ins). Row
/// locks would not do: `SELECT … FOR UPDATE` cannot lock the row a
/// concurrent transaction is about to insert.
pub(super) const LOCK_USER: &str =
    "SELECT pg_advisory_xact_lock(hashtextextended('tessera_session_cap:' || $1, 0))";
/// The user's live sessions, oldest first (the eviction order, as
/// `list_by_user`).
pub(super) const LIVE_HANDLES_BY_USER: &str = "SELECT handle FROM tessera_sessions \
    WHERE user_id = $1 AND next_deadline > $2 ORDER BY created_at, handle COLLATE \"C\"";
/// Ends the evicted sessions the way any revocation does: deleted,
/// with a tombstone, in one statement.
pub(super) const EVICT: &str = "WITH gone AS (DELETE FROM tessera_sessions \
    WHERE handle = ANY($2) RETURNING hash, absolute_deadline) \
    INSERT INTO tessera_tombstones (hash, reason, expires_at) \
    SELECT hash, $1, absolute_deadline FROM gone \
    ON CONFLICT (hash) DO UPDATE \
    SET reason = EXCLUDED.reason, expires_at = EXCLUDED.expires_at";
/// The outer `next_deadline <= $1` re-checks rows a concurrent writer
/// changed between the sub-select and the delete.
/// An idle-expired session (its absolute deadline still ahead) leaves
/// an `expired_idle` tombstone until that deadline, in the same
/// statement as its deletion (`tessera::ended`). Answers how many
/// sessions were deleted.
pub(super) const PURGE: &str = "WITH gone AS (DELETE FROM tessera_sessions WHERE hash IN \
    (SELECT hash FROM tessera_sessions WHERE next_deadline <= $1 \
     ORDER BY next_deadline LIMIT $2 FOR UPDATE SKIP LOCKED) \
    AND next_deadline <= $1 RETURNING hash, absolute_deadline), \
    buried AS (INSERT INTO tessera_tombstones (hash, reason, expires_at) \
    SELECT hash, 'expired_idle', absolute_deadline FROM gone WHERE absolute_deadline > $1 \
    ON CONFLICT (hash) DO NOTHING) \
    SELECT count(*) FROM gone";
pub(super) fn select_by_handle() -> String {
    format!("SELECT {COLUMNS} FROM tessera_sessions WHERE handle = $1")
}

pub(super) const REFRESH_INSERT: &str = "INSERT INTO tessera_refresh_tokens (hash, family, \
    user_id, issued_at, expires_at, used_at, child_hash, sealed_child) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
pub(super) const REFRESH_SELECT: &str = "SELECT hash, family, user_id, issued_at, \
    expires_at, used_at, child_hash, sealed_child FROM tessera_refresh_tokens \
    WHERE hash = $1";
/// The compare-and-set of a rotation. A concurrent use of the same
/// parent waits for this row lock and then re-checks the `WHERE` on the
/// committed row, so exactly one of them matches.
pub(super) const REFRESH_USE: &str = "UPDATE tessera_refresh_tokens \
    SET used_at = $1, child_hash = $2, sealed_child = $3 \
    WHERE hash = $4 AND used_at IS NULL AND expires_at > $5";
pub(super) const REFRESH_DELETE_FAMILY: &str =
    "DELETE FROM tessera_refresh_tokens WHERE family = $1";
/// Raises a not-before: never backward, and the cause changes only
/// with the time (an equal time keeps the first cause).
pub(super) const NOT_BEFORE_RAISE: &str = "INSERT INTO tessera_not_before \
    (scope, user_id, at, reason) VALUES ($1, $2, $3, $4) \
    ON CONFLICT (scope, user_id) DO UPDATE SET at = excluded.at, reason = excluded.reason \
    WHERE excluded.at > tessera_not_before.at";
pub(super) const NOT_BEFORE_SELECT: &str =
    "SELECT at, reason FROM tessera_not_before WHERE scope = $1 AND user_id = $2";
pub(super) const TOMBSTONE: &str =
    "SELECT reason FROM tessera_tombstones WHERE hash = $1 AND expires_at > $2";
/// Bounded like `PURGE`, through the `expires_at` index.
pub(super) const TOMBSTONE_PURGE: &str = "DELETE FROM tessera_tombstones WHERE hash IN \
    (SELECT hash FROM tessera_tombstones WHERE expires_at <= $1 \
     ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)";
/// Bounded like `PURGE`; skips rows a rotation holds.
pub(super) const REFRESH_PURGE: &str = "DELETE FROM tessera_refresh_tokens WHERE hash IN \
    (SELECT hash FROM tessera_refresh_tokens WHERE expires_at <= $1 \
     ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)";
