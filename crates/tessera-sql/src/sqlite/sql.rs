//! The statements, in one place so tests can `EXPLAIN` the very text
//! the store runs.

pub(super) const SELECT_BY_HASH: &str = "SELECT hash, handle, user_id, data, created_at, \
    last_seen_at, authenticated_at, idle_deadline, absolute_deadline, version, csrf_secret, \
    client_ip, user_agent, session_class FROM tessera_sessions WHERE hash = ?";
pub(super) const NEXT_DEADLINE: &str = "SELECT next_deadline FROM tessera_sessions WHERE hash = ?";
pub(super) const INSERT: &str = "INSERT INTO tessera_sessions (hash, handle, user_id, data, \
    created_at, last_seen_at, authenticated_at, idle_deadline, absolute_deadline, \
    next_deadline, version, csrf_secret, client_ip, user_agent, session_class) \
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
const SET_MUTABLE: &str = "data = ?, created_at = ?, last_seen_at = ?, \
    authenticated_at = ?, idle_deadline = ?, absolute_deadline = ?, next_deadline = ?, \
    version = ?, csrf_secret = ?, client_ip = ?, user_agent = ?, session_class = ?";
pub(super) fn cas_update() -> String {
    format!(
        "UPDATE tessera_sessions SET {SET_MUTABLE} \
         WHERE hash = ? AND version = ? AND next_deadline > ?"
    )
}
pub(super) fn update_locked() -> String {
    format!("UPDATE tessera_sessions SET {SET_MUTABLE} WHERE hash = ?")
}
pub(super) fn rotate() -> String {
    format!(
        "UPDATE tessera_sessions SET hash = ?, handle = ?, user_id = ?, {SET_MUTABLE} \
         WHERE hash = ? AND version = ? AND next_deadline > ?"
    )
}
pub(super) const DELETE: &str = "DELETE FROM tessera_sessions WHERE hash = ?";
/// The user's live sessions, oldest first (the eviction order).
pub(super) const LIVE_HANDLES_BY_USER: &str = "SELECT handle FROM tessera_sessions \
    WHERE user_id = ? AND next_deadline > ? ORDER BY created_at, handle";
/// Tombstone, then delete, of one session by handle: an eviction by
/// the session cap ends a session the way any revocation does.
pub(super) const TOMBSTONE_BY_HANDLE: &str = "INSERT OR REPLACE INTO tessera_tombstones \
    (hash, reason, expires_at) \
    SELECT hash, ?, absolute_deadline FROM tessera_sessions WHERE handle = ?";
pub(super) const DELETE_HANDLE: &str = "DELETE FROM tessera_sessions WHERE handle = ?";
/// Same condition as the deletes of `bury` (index plan tests).
#[cfg(test)]
pub(super) const DELETE_BY_HANDLE: &str = "DELETE FROM tessera_sessions WHERE handle = ?";
pub(super) const LIST_BY_USER: &str = "SELECT hash, handle, user_id, data, created_at, \
    last_seen_at, authenticated_at, idle_deadline, absolute_deadline, version, csrf_secret, \
    client_ip, user_agent, session_class FROM tessera_sessions \
    WHERE user_id = ? AND next_deadline > ? ORDER BY created_at, handle";
/// Same condition as the deletes of `bury` (index plan tests).
#[cfg(test)]
pub(super) const DELETE_BY_USER_EXCEPT: &str =
    "DELETE FROM tessera_sessions WHERE user_id = ? AND handle <> ?";
/// Bounded: at most `LIMIT` rows per statement, oldest deadline first,
/// found through the `next_deadline` index, so the write lock is held
/// briefly whatever the backlog.
pub(super) const PURGE: &str = "DELETE FROM tessera_sessions WHERE hash IN \
    (SELECT hash FROM tessera_sessions WHERE next_deadline <= ?1 \
     ORDER BY next_deadline LIMIT ?2)";
/// Before `PURGE`, in its transaction and on the same rows: an
/// idle-expired session (its absolute deadline still ahead) leaves an
/// `expired_idle` tombstone until that deadline (`tessera::ended`).
pub(super) const PURGE_TOMBSTONES: &str = "INSERT OR IGNORE INTO tessera_tombstones \
    (hash, reason, expires_at) \
    SELECT hash, 'expired_idle', absolute_deadline FROM tessera_sessions WHERE hash IN \
    (SELECT hash FROM tessera_sessions WHERE next_deadline <= ?1 \
     ORDER BY next_deadline LIMIT ?2) AND absolute_deadline > ?1";
pub(super) const SELECT_BY_HANDLE: &str = "SELECT hash, handle, user_id, data, created_at, \
    last_seen_at, authenticated_at, idle_deadline, absolute_deadline, version, csrf_secret, \
    client_ip, user_agent, session_class FROM tessera_sessions WHERE handle = ?";

pub(super) const REFRESH_INSERT: &str = "INSERT INTO tessera_refresh_tokens (hash, family, \
    user_id, issued_at, expires_at, used_at, child_hash, sealed_child) \
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
pub(super) const REFRESH_SELECT: &str = "SELECT hash, family, user_id, issued_at, \
    expires_at, used_at, child_hash, sealed_child FROM tessera_refresh_tokens WHERE hash = ?";
/// The compare-and-set of a rotation: only an unused parent that is
/// live at `now` is marked.
pub(super) const REFRESH_USE: &str = "UPDATE tessera_refresh_tokens \
    SET used_at = ?, child_hash = ?, sealed_child = ? \
    WHERE hash = ? AND used_at IS NULL AND expires_at > ?";
pub(super) const REFRESH_DELETE_FAMILY: &str =
    "DELETE FROM tessera_refresh_tokens WHERE family = ?";
/// Raises a not-before: never backward, and the cause changes only
/// with the time (an equal time keeps the first cause).
pub(super) const NOT_BEFORE_RAISE: &str = "INSERT INTO tessera_not_before \
    (scope, user_id, at, reason) VALUES (?, ?, ?, ?) \
    ON CONFLICT (scope, user_id) DO UPDATE SET at = excluded.at, reason = excluded.reason \
    WHERE excluded.at > tessera_not_before.at";
pub(super) const NOT_BEFORE_SELECT: &str =
    "SELECT at, reason FROM tessera_not_before WHERE scope = ? AND user_id = ?";
pub(super) const TOMBSTONE: &str =
    "SELECT reason FROM tessera_tombstones WHERE hash = ? AND expires_at > ?";
/// Bounded like `PURGE`, through the `expires_at` index.
pub(super) const TOMBSTONE_PURGE: &str = "DELETE FROM tessera_tombstones WHERE hash IN \
    (SELECT hash FROM tessera_tombstones WHERE expires_at <= ? \
     ORDER BY expires_at LIMIT ?)";
/// Bounded like `PURGE`, through the `expires_at` index.
pub(super) const REFRESH_PURGE: &str = "DELETE FROM tessera_refresh_tokens WHERE hash IN \
    (SELECT hash FROM tessera_refresh_tokens WHERE expires_at <= ? \
     ORDER BY expires_at LIMIT ?)";
