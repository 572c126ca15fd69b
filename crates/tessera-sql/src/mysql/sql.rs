//! The statements, in one place.

const COLUMNS: &str = "hash, handle, user_id, data, created_at, last_seen_at, \
    authenticated_at, idle_deadline, absolute_deadline, version, csrf_secret, client_ip, \
    user_agent, session_class";
const SET_MUTABLE: &str = "data = ?, created_at = ?, last_seen_at = ?, \
    authenticated_at = ?, idle_deadline = ?, absolute_deadline = ?, next_deadline = ?, \
    version = ?, csrf_secret = ?, client_ip = ?, user_agent = ?, session_class = ?";

pub(super) fn select_by_hash() -> String {
    format!("SELECT {COLUMNS} FROM tessera_sessions WHERE hash = ?")
}
pub(super) fn select_for_update() -> String {
    format!("SELECT {COLUMNS} FROM tessera_sessions WHERE hash = ? FOR UPDATE")
}
pub(super) fn list_by_user() -> String {
    format!(
        "SELECT {COLUMNS} FROM tessera_sessions WHERE user_id = ? AND next_deadline > ? \
         ORDER BY created_at, handle"
    )
}
pub(super) const NEXT_DEADLINE: &str = "SELECT next_deadline FROM tessera_sessions WHERE hash = ?";
/// Takes the user's cap lock row for the rest of the transaction
/// (see the migration `tessera_session_cap_locks`).
pub(super) const LOCK_USER: &str = "INSERT INTO tessera_session_cap_locks (user_id) \
    VALUES (?) ON DUPLICATE KEY UPDATE user_id = user_id";
/// The user's live sessions, oldest first (the eviction order, as
/// `list_by_user`); a locking read, so it sees the latest commits.
pub(super) const LIVE_HANDLES_BY_USER: &str = "SELECT handle FROM tessera_sessions \
    WHERE user_id = ? AND next_deadline > ? ORDER BY created_at, handle FOR UPDATE";
/// Tombstone, then delete, of one evicted session: it ends the way any
/// revocation does.
pub(super) const TOMBSTONE_BY_HANDLE: &str = "INSERT INTO tessera_tombstones \
    (hash, reason, expires_at) \
    SELECT hash, ?, absolute_deadline FROM tessera_sessions WHERE handle = ? \
    ON DUPLICATE KEY UPDATE reason = VALUES(reason), expires_at = VALUES(expires_at)";
pub(super) const DELETE_HANDLE: &str = "DELETE FROM tessera_sessions WHERE handle = ?";
pub(super) const INSERT: &str = "INSERT INTO tessera_sessions (hash, handle, user_id, data, \
    created_at, last_seen_at, authenticated_at, idle_deadline, absolute_deadline, \
    next_deadline, version, csrf_secret, client_ip, user_agent, session_class) \
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
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
/// The rows one purge batch takes, locked until its commit.
pub(super) const PURGE_LOCK: &str = "SELECT hash, absolute_deadline FROM tessera_sessions \
    WHERE next_deadline <= ? ORDER BY next_deadline LIMIT ? FOR UPDATE";
pub(super) fn select_by_handle() -> String {
    format!("SELECT {COLUMNS} FROM tessera_sessions WHERE handle = ?")
}

pub(super) const REFRESH_INSERT: &str = "INSERT INTO tessera_refresh_tokens (hash, family, \
    user_id, issued_at, expires_at, used_at, child_hash, sealed_child) \
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
const REFRESH_COLUMNS: &str = "hash, family, user_id, issued_at, expires_at, used_at, \
    child_hash, sealed_child";
pub(super) fn refresh_select() -> String {
    format!("SELECT {REFRESH_COLUMNS} FROM tessera_refresh_tokens WHERE hash = ?")
}
/// A locking read: it sees the latest committed row, not the
/// transaction's REPEATABLE READ snapshot.
pub(super) fn refresh_select_locked() -> String {
    format!("SELECT {REFRESH_COLUMNS} FROM tessera_refresh_tokens WHERE hash = ? FOR UPDATE")
}
/// The compare-and-set of a rotation: InnoDB's `UPDATE` reads the
/// latest committed row under its lock, so exactly one of two
/// concurrent uses of a parent matches.
pub(super) const REFRESH_USE: &str = "UPDATE tessera_refresh_tokens \
    SET used_at = ?, child_hash = ?, sealed_child = ? \
    WHERE hash = ? AND used_at IS NULL AND expires_at > ?";
pub(super) const REFRESH_DELETE_FAMILY: &str =
    "DELETE FROM tessera_refresh_tokens WHERE family = ?";
/// Raises a not-before: never backward, and the cause changes only
/// with the time (an equal time keeps the first cause). The
/// assignments run left to right: `reason` compares with the old `at`.
pub(super) const NOT_BEFORE_RAISE: &str = "INSERT INTO tessera_not_before \
    (scope, user_id, at, reason) VALUES (?, ?, ?, ?) ON DUPLICATE KEY UPDATE \
    reason = IF(VALUES(at) > at, VALUES(reason), reason), at = GREATEST(at, VALUES(at))";
pub(super) const NOT_BEFORE_SELECT: &str =
    "SELECT at, reason FROM tessera_not_before WHERE scope = ? AND user_id = ?";
pub(super) const TOMBSTONE: &str =
    "SELECT reason FROM tessera_tombstones WHERE hash = ? AND expires_at > ?";
/// Bounded like `PURGE`, through the `expires_at` index.
pub(super) const TOMBSTONE_PURGE: &str = "DELETE FROM tessera_tombstones \
    WHERE expires_at <= ? ORDER BY expires_at LIMIT ?";
pub(super) const REFRESH_PURGE: &str = "DELETE FROM tessera_refresh_tokens \
    WHERE expires_at <= ? ORDER BY expires_at LIMIT ?";
