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
/// | data writes and touches made at about the same time on one node | [`Invalidate::Sessions`] (up to [`MAX_SESSIONS_PER_MESSAGE`] hashes) |
/// | revoke one session by its handle, session-limit eviction | [`Invalidate::Handle`] |
/// | revoke every session of a user, password change, disable, a per-user "not before" | [`Invalidate::User`] |
/// | sign everybody out, a global "not before" | [`Invalidate::Everyone`] |
/// | a credential checked outside the session store was revoked (the server's API keys) | [`Invalidate::Credentials`] |
///
/// The wire form ([`Invalidate::encode_from`], with the sending cache's
/// [`Origin`]; [`Invalidate::encode`] without) is one short line of text, so
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
    /// Each of these sessions changed: the data writes of one node sent
    /// as one message (at most [`MAX_SESSIONS_PER_MESSAGE`] hashes; a
    /// longer list is refused on decoding).
    Sessions(Vec<TokenHash>),
    /// The session with this public handle ended.
    Handle(SessionHandle),
    /// Every session of this user ended (or must be re-checked).
    User(String),
    /// Every session ended (or must be re-checked): drop the whole cache.
    Everyone,
    /// A credential kept outside the session store was revoked (the
    /// server's API keys): forget every one remembered under a
    /// [`Vouch`](super::Vouch). Cached sessions stay.
    Credentials,
}

/// Most token hashes one [`Invalidate::Sessions`] message carries: 100
/// hashes of 65 bytes each fit PostgreSQL's 8,000-byte `NOTIFY` payload.
pub const MAX_SESSIONS_PER_MESSAGE: usize = 100;

/// Version tag of the wire form without an origin, so that a future
/// format is refused (and answered with a full flush) rather than misread.
const TAG: &str = "t1";
/// Version tag of the wire form that names the cache that sent it.
const TAG_FROM: &str = "t2";

/// Which cache published a message: a random 64-bit id drawn when a
/// [`CachedStore`](super::CachedStore) is built (its clones share it).
///
/// A cache skips only the messages that carry **its own** origin: it
/// applied them locally before publishing them, so hearing them back would
/// evict what its own write just cached, and nothing else. Every other
/// message is applied: one with another origin, with no origin (the `t1`
/// form), or one that cannot be read (which flushes the cache). So an id
/// does not let anyone have a message ignored anywhere but on the one
/// cache that sent it; a forger able to publish on the channel could at
/// most send a message that its target skips, which leaves that cache as
/// it was, never newer than its store (the forger can only add evictions,
/// never remove one that a genuine writer sent).
///
/// ```
/// use tessera::cache::{Invalidate, Origin};
///
/// let origin = Origin::from_u64(7);
/// let wire = Invalidate::Everyone.encode_from(origin);
/// assert_eq!(Invalidate::decode_from(&wire), Some((Some(origin), Invalidate::Everyone)));
/// assert_eq!(Invalidate::decode(&wire), Some(Invalidate::Everyone));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Origin(u64);

impl Origin {
    /// A fresh random origin (from the operating system's generator; a
    /// clock-derived fallback if it fails, which only makes a collision
    /// between two caches likelier, and a collision costs only hits).
    pub fn random() -> Self {
        let mut bytes = [0u8; 8];
        if crate::random::fill(&mut bytes).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            #[allow(clippy::cast_possible_truncation)]
            let low = nanos as u64;
            bytes = (low ^ u64::from(std::process::id()).rotate_left(32)).to_le_bytes();
        }
        Self(u64::from_le_bytes(bytes))
    }

    /// An origin with a given value (tests, or a channel that transports
    /// origins itself).
    pub const fn from_u64(value: u64) -> Self {
        Self(value)
    }

    /// The value.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl Invalidate {
    /// The wire form: `t1 s <hash hex>`, `t1 S <hash hex> <hash hex> …`,
    /// `t1 h <handle>`, `t1 u <user id>`, `t1 a` or `t1 c`.
    pub fn encode(&self) -> String {
        match self {
            Self::Session(hash) => format!("{TAG} s {}", hash.to_hex()),
            Self::Sessions(hashes) => {
                let mut out = format!("{TAG} S");
                for hash in hashes {
                    out.push(' ');
                    out.push_str(&hash.to_hex());
                }
                out
            }
            Self::Handle(handle) => format!("{TAG} h {}", handle.as_str()),
            Self::User(user) => format!("{TAG} u {user}"),
            Self::Everyone => format!("{TAG} a"),
            Self::Credentials => format!("{TAG} c"),
        }
    }

    /// The wire form naming the cache that sent it: `t2 <origin hex> `
    /// followed by the `t1` form's kind and value (`s <hash hex>`,
    /// `S <hash hex> …`, `h <handle>`, `u <user id>`, `a` or `c`). A
    /// receiver of an older version does not read it and flushes its whole
    /// cache instead (safe; costs hits while a fleet is upgraded). That is
    /// also how a receiver older than [`Invalidate::Credentials`] treats
    /// `c`.
    pub fn encode_from(&self, origin: Origin) -> String {
        let body = self.encode();
        let rest = body.strip_prefix(TAG).unwrap_or(&body);
        format!("{TAG_FROM} {:016x}{rest}", origin.0)
    }

    /// Parses either wire form, with the origin if it has one; `None` for
    /// anything else (which a receiver must answer with a flush).
    pub fn decode_from(text: &str) -> Option<(Option<Origin>, Self)> {
        if let Some(rest) = text.strip_prefix(TAG_FROM) {
            let rest = rest.strip_prefix(' ')?;
            let (origin, body) = rest.split_at_checked(16)?;
            if !origin
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            {
                return None;
            }
            let origin = u64::from_str_radix(origin, 16).ok()?;
            let message = Self::decode_body(body.strip_prefix(' ')?)?;
            return Some((Some(Origin(origin)), message));
        }
        Self::decode(text).map(|m| (None, m))
    }

    /// Parses the wire form; `None` for anything else. A receiver that
    /// cannot parse a message must flush its whole cache (see
    /// [`InvalidationSink::deliver_raw`](super::InvalidationSink::deliver_raw)):
    /// a message it does not understand may be a revocation.
    ///
    /// Accepts the form with an origin too (and drops the origin).
    pub fn decode(text: &str) -> Option<Self> {
        if text.starts_with(TAG_FROM) {
            return Self::decode_from(text).map(|(_, m)| m);
        }
        let rest = text.strip_prefix(TAG)?.strip_prefix(' ')?;
        Self::decode_body(rest)
    }

    /// The kind and value after the tag (and origin).
    fn decode_body(rest: &str) -> Option<Self> {
        match rest {
            "a" => return Some(Self::Everyone),
            "c" => return Some(Self::Credentials),
            _ => {}
        }
        let (kind, value) = rest.split_once(' ')?;
        match kind {
            "s" => TokenHash::from_hex(value).map(Self::Session),
            "S" => {
                let hashes = value
                    .split(' ')
                    .map(TokenHash::from_hex)
                    .collect::<Option<Vec<_>>>()?;
                (hashes.len() <= MAX_SESSIONS_PER_MESSAGE).then_some(Self::Sessions(hashes))
            }
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
            Invalidate::Sessions(vec![TokenHash::from_bytes([1; 32])]),
            Invalidate::Sessions(
                (0..=255u8)
                    .take(MAX_SESSIONS_PER_MESSAGE)
                    .map(|b| TokenHash::from_bytes([b; 32]))
                    .collect(),
            ),
            Invalidate::Handle(SessionHandle::generate().unwrap()),
            Invalidate::User("user with spaces and ünicode".into()),
            Invalidate::User(String::new()),
            Invalidate::Everyone,
            Invalidate::Credentials,
        ];
        for m in messages {
            assert_eq!(Invalidate::decode(&m.encode()), Some(m));
        }
    }

    #[test]
    fn every_kind_round_trips_with_its_origin() {
        let origin = Origin::from_u64(0x0123_4567_89ab_cdef);
        let messages = [
            Invalidate::Session(TokenHash::from_bytes([0xa5; 32])),
            Invalidate::Sessions(vec![
                TokenHash::from_bytes([1; 32]),
                TokenHash::from_bytes([2; 32]),
            ]),
            Invalidate::Handle(SessionHandle::generate().unwrap()),
            Invalidate::User("user with spaces".into()),
            Invalidate::User(String::new()),
            Invalidate::Everyone,
            Invalidate::Credentials,
        ];
        for m in messages {
            let wire = m.encode_from(origin);
            assert!(wire.starts_with("t2 0123456789abcdef "), "{wire}");
            assert_eq!(
                Invalidate::decode_from(&wire),
                Some((Some(origin), m.clone()))
            );
            assert_eq!(Invalidate::decode(&wire), Some(m.clone()));
            assert_eq!(Invalidate::decode_from(&m.encode()), Some((None, m)));
        }
    }

    #[test]
    fn malformed_messages_with_an_origin_are_refused() {
        for bad in [
            "t2",
            "t2 ",
            "t2 0123456789abcdef",
            "t2 0123456789abcdef ",
            "t2 0123456789ABCDEF a",
            "t2 0123456789abcde a",
            "t2 +123456789abcdef a",
            "t2 0123456789abcdefa",
            "t2 0123456789abcdef x y",
            "t2 0123456789abcdef s nothex",
            "t2 0123456789abcdef S",
            "t2 0123456789abcdef S ",
            "t3 0123456789abcdef a",
        ] {
            assert_eq!(Invalidate::decode_from(bad), None, "{bad:?}");
            assert_eq!(Invalidate::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn origins_differ() {
        assert_ne!(Origin::random(), Origin::random());
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
            "t1 c extra",
            "t1 c ",
            "t1 S",
            "t1 S  ",
        ] {
            assert_eq!(Invalidate::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_batch_fits_a_postgres_notification_and_no_longer_one_is_read() {
        let most = Invalidate::Sessions(vec![
            TokenHash::from_bytes([0xff; 32]);
            MAX_SESSIONS_PER_MESSAGE
        ]);
        let wire = most.encode_from(Origin::from_u64(u64::MAX));
        assert!(wire.len() < 8_000, "{} bytes", wire.len());
        assert_eq!(Invalidate::decode(&wire), Some(most));
        let over = Invalidate::Sessions(vec![
            TokenHash::from_bytes([0xff; 32]);
            MAX_SESSIONS_PER_MESSAGE + 1
        ]);
        assert_eq!(Invalidate::decode(&over.encode()), None);
    }
}
