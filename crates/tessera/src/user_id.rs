//! [`UserId`]: the rule for user ids, in one place for the library and
//! the server.
//!
//! A user id is 1 to [`MAX_USER_ID_BYTES`] bytes with no control
//! characters. Empty ids would make "signed in as nobody" sessions; control
//! characters (a newline above all) would split audit lines and break the
//! headers that carry the id to backends (`X-Tessera-User` of forward auth).
//! [`crate::SessionManager`] refuses any other id before it writes
//! anything ([`crate::SessionError::InvalidUserId`]).

use std::fmt;

/// Longest accepted user id, in bytes.
pub const MAX_USER_ID_BYTES: usize = 256;

/// A user id that follows the rule (see the module docs).
///
/// ```
/// use tessera::user_id::UserId;
/// assert_eq!(UserId::new("alice")?.as_str(), "alice");
/// assert!(UserId::new("").is_err());
/// assert!(UserId::new("alice\nadmin").is_err());
/// assert!(UserId::new("x".repeat(257)).is_err());
/// # Ok::<(), tessera::user_id::InvalidUserId>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(String);

/// A user id that does not follow the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a user id must be 1 to {MAX_USER_ID_BYTES} bytes without control characters")]
pub struct InvalidUserId;

impl UserId {
    /// `id` if it follows the rule.
    ///
    /// # Errors
    ///
    /// [`InvalidUserId`] otherwise.
    pub fn new(id: impl Into<String>) -> Result<Self, InvalidUserId> {
        let id = id.into();
        Self::check(&id)?;
        Ok(Self(id))
    }

    /// Checks `id` against the rule without taking it.
    ///
    /// # Errors
    ///
    /// [`InvalidUserId`] if it does not follow it.
    pub fn check(id: &str) -> Result<(), InvalidUserId> {
        if id.is_empty() || id.len() > MAX_USER_ID_BYTES || id.chars().any(char::is_control) {
            return Err(InvalidUserId);
        }
        Ok(())
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id, as a `String`.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for UserId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UserId {
    type Error = InvalidUserId;

    fn try_from(id: String) -> Result<Self, InvalidUserId> {
        Self::new(id)
    }
}

impl From<UserId> for String {
    fn from(id: UserId) -> Self {
        id.0
    }
}
