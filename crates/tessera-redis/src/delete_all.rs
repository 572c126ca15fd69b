//! [`Store::delete_all`](tessera::store::Store::delete_all) on Redis and
//! Redis Cluster: the administrator's "sign everybody out" (ASVS 5.0
//! V7.4.5), within this store's key prefix.
//!
//! There is no index of all sessions (it would be one hot key on a
//! cluster), so the keys are found with `SCAN MATCH <prefix>…` — on every
//! master of a cluster — in pages, and removed in pages:
//!
//! 1. every handle record (`<prefix>h:{…}`) is revoked exactly as
//!    `delete_by_user` revokes one: its generation is bumped *before* its
//!    session keys are deleted, so a rotation racing the wipe aborts instead
//!    of leaving a re-keyed session behind;
//! 2. any session key still there (`<prefix>s:{…}`, for example one whose
//!    handle record was lost) is `UNLINK`ed;
//! 3. refresh-token families and their pointers (`<prefix>f:`, `<prefix>r:`)
//!    are `UNLINK`ed.
//!
//! User indexes are left alone: readers already skip handles whose sessions
//! are gone, the entries expire by score, and deleting an index could drop
//! the entry of a sign-in that happens during the wipe, hiding that session
//! from a later revoke-all of its user.

use std::pin::Pin;

use fred::interfaces::KeysInterface;
use fred::types::Key;
use futures_util::future::join_all;
use futures_util::{Stream, StreamExt};
use tessera::error::StoreError;

use crate::RedisStore;
use crate::error::map_err;

/// Keys asked for per `SCAN` call, and deleted concurrently per page.
const PAGE: usize = 200;

type Keys = Pin<Box<dyn Stream<Item = Result<Key, fred::error::Error>> + Send>>;

impl RedisStore {
    /// Deletes every session and refresh family under this store's prefix;
    /// returns how many sessions were deleted.
    pub(crate) async fn delete_all_inner(&self) -> Result<u64, StoreError> {
        let mut deleted = 0u64;
        let handle_prefix = format!("{}h:{{", self.inner.prefix);
        let mut pages = self.scan("h").chunks(PAGE);
        while let Some(page) = pages.next().await {
            let keys = page.into_iter().collect::<Result<Vec<Key>, _>>();
            let handles: Vec<String> = keys
                .map_err(map_err)?
                .iter()
                .filter_map(|k| {
                    k.as_str()?
                        .strip_prefix(&handle_prefix)?
                        .strip_suffix('}')
                        .map(str::to_owned)
                })
                .collect();
            for revoked in join_all(handles.iter().map(|h| self.revoke_handle(h, None, None))).await
            {
                deleted = deleted.saturating_add(revoked?);
            }
        }
        for kind in ["s", "f", "r"] {
            let mut pages = self.scan(kind).chunks(PAGE);
            while let Some(page) = pages.next().await {
                let keys = page
                    .into_iter()
                    .collect::<Result<Vec<Key>, _>>()
                    .map_err(map_err)?;
                // One key per command: on a cluster the keys of a page live
                // in different slots (a multi-key UNLINK would be CROSSSLOT).
                let unlinked = join_all(
                    keys.into_iter()
                        .map(|k| self.inner.client.unlink::<i64, _>(k)),
                )
                .await;
                for n in unlinked {
                    let n = n.map_err(map_err)?;
                    if kind == "s" {
                        deleted = deleted.saturating_add(u64::try_from(n).unwrap_or(0));
                    }
                }
            }
        }
        Ok(deleted)
    }

    /// Every key `<prefix><kind>:…`, from every master.
    fn scan(&self, kind: &str) -> Keys {
        let pattern = format!("{}{kind}:*", glob_escape(&self.inner.prefix));
        let count = Some(u32::try_from(PAGE).unwrap_or(u32::MAX));
        if self.inner.clustered {
            Box::pin(
                self.inner
                    .client
                    .scan_cluster_buffered(pattern, count, None),
            )
        } else {
            Box::pin(self.inner.client.scan_buffered(pattern, count, None))
        }
    }
}

/// `prefix` with the glob metacharacters of `SCAN MATCH` escaped, so a
/// prefix like `app[1]:` matches only itself.
fn glob_escape(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len());
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::glob_escape;

    #[test]
    fn prefixes_match_only_themselves() {
        assert_eq!(glob_escape("tessera:"), "tessera:");
        assert_eq!(glob_escape("a*b?[c]\\:"), "a\\*b\\?\\[c\\]\\\\:");
    }
}
