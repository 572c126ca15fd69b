//! Tombstones in SQL: which sessions an ending takes, as a `WHERE`
//! condition shared by the statement that records why and the one that
//! deletes (see `tessera::ended`). Each store runs the two in one
//! transaction (SQLite, MySQL) or as one statement (PostgreSQL), so a
//! session is never gone without its tombstone or the other way round.

use tessera::record::SessionHandle;
use tessera::token::TokenHash;

/// The sessions an ending takes.
pub(crate) enum Target<'a> {
    /// One session by token hash (sign-out, expiry).
    Hash(&'a TokenHash),
    /// One session by handle, owned by the user if given.
    Handle(&'a SessionHandle, Option<&'a str>),
    /// Every session of a user, except the handle if given.
    User(&'a str, Option<&'a SessionHandle>),
}

impl Target<'_> {
    /// The condition on `tessera_sessions`, with `?` placeholders, or with
    /// `$first`, `$first+1`, … for PostgreSQL.
    pub(crate) fn condition(&self, pg_first: Option<usize>) -> String {
        let text = match self {
            Self::Hash(_) => "hash = ?",
            Self::Handle(_, None) => "handle = ?",
            Self::Handle(_, Some(_)) => "handle = ? AND user_id = ?",
            Self::User(_, None) => "user_id = ?",
            Self::User(_, Some(_)) => "user_id = ? AND handle <> ?",
        };
        let Some(mut n) = pg_first else {
            return text.to_owned();
        };
        let mut out = String::with_capacity(text.len() + 4);
        for c in text.chars() {
            if c == '?' {
                out.push('$');
                out.push_str(&n.to_string());
                n += 1;
            } else {
                out.push(c);
            }
        }
        out
    }
}

/// Binds a [`Target`]'s values, in the order of its condition.
macro_rules! bind_target {
    ($query:expr, $target:expr) => {
        match $target {
            $crate::tombstone::Target::Hash(h) => $query.bind(h.as_bytes().as_slice()),
            $crate::tombstone::Target::Handle(h, None) => $query.bind(h.as_str()),
            $crate::tombstone::Target::Handle(h, Some(owner)) => {
                $query.bind(h.as_str()).bind(*owner)
            }
            $crate::tombstone::Target::User(u, None) => $query.bind(*u),
            $crate::tombstone::Target::User(u, Some(keep)) => $query.bind(*u).bind(keep.as_str()),
        }
    };
}

pub(crate) use bind_target;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_placeholders_are_numbered_from_the_first() {
        let user = Target::User("u", None);
        assert_eq!(user.condition(None), "user_id = ?");
        let handle = SessionHandle::generate().unwrap();
        let t = Target::Handle(&handle, Some("u"));
        assert_eq!(t.condition(Some(2)), "handle = $2 AND user_id = $3");
    }
}
