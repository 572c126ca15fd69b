//! What one node tells the others when a session changed.

use crate::record::SessionHandle;
use crate::token::TokenHash;

/// An invalidation: which cached sessions another node must stop serving.
///
/// Every write through a [`CachedStore`](super::CachedStore) publishes one:
///
/// | change | message |
/// | --- | --- |
/// | data write, deadline-moving touch, rotation, destroy, expiry | [`Invalidate::Session`] (the old token's hash) |
/// | revoke one session by its handle, session-limit eviction | [`Invalidate::Handle`] |
/// | revoke every session of a user, password change, disable, a per-user "not before" | [`Invalidate::User`] |
/// | sign everybody out, a global "not before" | [`Invalidate::Everyone`] |
///
/// The wire form ([`Invalidate::encode`]) is one short line of text, so
/// that Redis pub/sub and PostgreSQL `NOTIFY` (8,000 bytes at most per
/// payload) carry it unchanged. It holds a token *hash*, never a token: a
/// message read off the channel cannot be replayed as a credential.
///
/// ```
/// use tessera::cache::Invalidate;
///
/// let message = Invalidate::User("alice".into());
/// assert_eq!(Invalidate::decode(&message.encode()), Some(message));
/// assert_eq!(Invalidate::decode("garbage"), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Invalidate {
    /// The session stored under this token hash changed or ended.
    Session(TokenHash),
    /// The session with this public handle ended.
    Handle(SessionHandle),
    /// Every session of this user ended (or must be re-checked).
    User(String),
    /// Every session ended (or must be re-checked): drop the whole cache.
    Everyone,
}

/// Version tag of the wire form, so that a future format is refused
/// (and answered with a full flush) rather than misread.
const TAG: &str = "t1";

impl Invalidate {
    /// The wire form: `t1 s <hash hex>`, `t1 h <handle>`, `t1 u <user id>`
    /// or `t1 a`.
    pub fn encode(&self) -> String {
        match self {
            Self::Session(hash) => format!("{TAG} s {}", hash.to_hex()),
            Self::Handle(handle) => format!("{TAG} h {}", handle.as_str()),
            Self::User(user) => format!("{TAG} u {user}"),
            Self::Everyone => format!("{TAG} a"),
        }
    }

    /// Parses the wire form; `None` for anything else. A receiver that
    /// cannot parse a message must flush its whole cache (see
    /// [`InvalidationSink::deliver_raw`](super::InvalidationSink::deliver_raw)):
    /// a message it does not understand may be a revocation.
    pub fn decode(text: &str) -> Option<Self> {
        let rest = text.strip_prefix(TAG)?.strip_prefix(' ')?;
        if rest == "a" {
            return Some(Self::Everyone);
        }
        let (kind, value) = rest.split_once(' ')?;
        match kind {
            "s" => TokenHash::from_hex(value).map(Self::Session),
            "h" => SessionHandle::parse(value).map(Self::Handle),
            // User ids are opaque to tessera (any text); the rest of the
            // line is the id, spaces included.
            "u" => Some(Self::User(value.to_owned())),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips() {
        let messages = [
            Invalidate::Session(TokenHash::from_bytes([0xa5; 32])),
            Invalidate::Handle(SessionHandle::generate().unwrap()),
            Invalidate::User("user with spaces and ünicode".into()),
            Invalidate::User(String::new()),
            Invalidate::Everyone,
        ];
        for m in messages {
            assert_eq!(Invalidate::decode(&m.encode()), Some(m));
        }
    }

    #[test]
    fn malformed_messages_are_refused() {
        for bad in [
            "",
            "t1",
            "t1 ",
            "t2 a",
            "t1 s nothex",
            "t1 h ../etc",
            "t1 x y",
            "t1 a extra",
        ] {
            assert_eq!(Invalidate::decode(bad), None, "{bad:?}");
        }
    }
}
