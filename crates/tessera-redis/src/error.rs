//! How client errors map to [`StoreError`]. A leaf module, shared by
//! every part of the store.

use fred::error::{Error as RedisError, ErrorKind};
use tessera::error::StoreError;

/// Maps client errors: timeouts to [`StoreError::Timeout`], connection
/// trouble to [`StoreError::Unavailable`] (callers answer 503 either way),
/// everything else to [`StoreError::Backend`].
pub(crate) fn map_err(e: RedisError) -> StoreError {
    match e.kind() {
        ErrorKind::Timeout => StoreError::Timeout,
        ErrorKind::IO | ErrorKind::Canceled | ErrorKind::Routing | ErrorKind::Cluster => {
            StoreError::unavailable(e)
        }
        _ if e.details().starts_with("CLUSTERDOWN")
            || e.details().starts_with("LOADING")
            || e.details().starts_with("TRYAGAIN")
            || e.details().starts_with("MASTERDOWN") =>
        {
            StoreError::unavailable(e)
        }
        _ => StoreError::backend(e),
    }
}
