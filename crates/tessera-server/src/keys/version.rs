//! Which version of the signing keys is loaded, and how often verifying
//! looks for a newer one. A leaf module: the key set (`keys`) records it,
//! and the reload logic (`keys::reload`) compares it with the source.

use std::os::unix::fs::MetadataExt as _;
use std::time::Duration;

/// How often, at most, verifying re-checks the key directory when every
/// presented `kid` is known: the bound on how long a key removed on disk
/// keeps verifying here (see the [module docs](super)).
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(1);

/// What identifies one version of the manifest on disk without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Fingerprint {
    inode: u64,
    len: u64,
    mtime_ns: i128,
}

impl Fingerprint {
    pub(super) fn of(dir: &std::path::Path) -> Option<Self> {
        let meta = std::fs::metadata(dir.join("manifest.json")).ok()?;
        Some(Self {
            inode: meta.ino(),
            len: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        })
    }
}

/// Which version of the keys is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Seen {
    /// In memory only: never changes.
    Fixed,
    /// The directory's manifest (`None`: it could not be inspected).
    File(Option<Fingerprint>),
    /// The shared store's version number.
    Version(u64),
}
