//! Files the server creates on disk are private: the SQLite database holds
//! password hashes, session records and CSRF secrets, so it is created
//! `0600` (owner read/write only), and a directory the server creates for it
//! `0700`, like the signing-keys directory (CWE-276, incorrect default
//! permissions; OWASP Secrets Management Cheat Sheet: least privilege).
//!
//! SQLite creates the `-wal` and `-shm` files beside a database with the
//! database file's own permission bits, so creating the database `0600`
//! before SQLite opens it is what keeps all three private, whatever the
//! process umask. A directory that already exists (the working directory,
//! `/var/lib/…`) is left as it is: its permissions are the operator's.
//!
//! A database that already exists with permissions for group or others is
//! not changed behind the operator's back, but [`warn_if_exposed`] reports it
//! at start-up, naming the file and the command that fixes it.

use std::io;
use std::path::{Path, PathBuf};

/// Permission bits of a created database file: owner read/write.
pub const FILE_MODE: u32 = 0o600;

/// Permission bits of a directory created for a database: owner only.
pub const DIR_MODE: u32 = 0o700;

/// The file a `sqlite:` URL names, or `None` for an in-memory database,
/// another scheme, or a URL that opens an existing file only
/// (`mode=ro`/`mode=rw`).
///
/// ```
/// use std::path::PathBuf;
/// use tessera_server::files::sqlite_file;
/// assert_eq!(sqlite_file("sqlite://tessera.db"), Some(PathBuf::from("tessera.db")));
/// assert_eq!(sqlite_file("sqlite:///var/lib/t/all.db?mode=rwc"), Some(PathBuf::from("/var/lib/t/all.db")));
/// assert_eq!(sqlite_file("sqlite::memory:"), None);
/// assert_eq!(sqlite_file("postgres://db/t"), None);
/// ```
pub fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let (file, query) = rest.split_once('?').unwrap_or((rest, ""));
    if file.is_empty() || file.starts_with(':') {
        return None;
    }
    let opens_existing_only = query
        .split('&')
        .any(|p| matches!(p, "mode=ro" | "mode=rw" | "mode=memory"));
    (!opens_existing_only).then(|| PathBuf::from(file))
}

/// Creates the database file of a `sqlite:` URL, empty and `0600`, in a
/// `0700` directory created for it if missing, before SQLite opens it. Does
/// nothing for an existing file or a URL without one.
///
/// # Errors
///
/// The I/O error of creating the directory or the file.
pub fn create_private_sqlite(url: &str) -> io::Result<()> {
    let Some(file) = sqlite_file(url) else {
        return Ok(());
    };
    if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.exists()
    {
        create_private_dir(parent)?;
    }
    match create_private_file(&file) {
        // Another instance or an earlier run created it: what it holds and
        // its mode are reported by `warn_if_exposed`, not changed here.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        other => other.map(drop),
    }
}

/// Creates `dir` and any missing parents with mode `0700`.
///
/// # Errors
///
/// The I/O error.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, DIR_MODE);
    builder.create(dir)
}

/// Creates `file`, which must not exist yet, with mode `0600`, and opens it
/// for writing.
///
/// # Errors
///
/// [`io::ErrorKind::AlreadyExists`] if it exists; other I/O errors.
pub fn create_private_file(file: &Path) -> io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, FILE_MODE);
    options.open(file)
}

/// The files of a SQLite database (the database, `-wal`, `-shm`) that
/// exist and grant any permission to group or others, with their modes.
pub fn exposed_files(url: &str) -> Vec<(PathBuf, u32)> {
    let Some(file) = sqlite_file(url) else {
        return Vec::new();
    };
    let mut names = vec![file.clone()];
    for suffix in ["-wal", "-shm"] {
        let mut name = file.clone().into_os_string();
        name.push(suffix);
        names.push(PathBuf::from(name));
    }
    names
        .into_iter()
        .filter_map(|path| {
            let mode = mode_of(&path)?;
            (mode & 0o077 != 0).then_some((path, mode))
        })
        .collect()
}

#[cfg(unix)]
fn mode_of(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o777)
}

#[cfg(not(unix))]
fn mode_of(_path: &Path) -> Option<u32> {
    None
}

/// Logs a warning for each file of the SQLite database at `url` that
/// others may read or write (see [`exposed_files`]).
pub fn warn_if_exposed(url: &str) {
    for (path, mode) in exposed_files(url) {
        tracing::warn!(
            file = %path.display(),
            mode = %format!("{mode:04o}"),
            "the database file is accessible to other users of this machine: it holds \
             password hashes, sessions and CSRF secrets; restrict it with chmod 600"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_file() {
        assert_eq!(sqlite_file("sqlite:t.db"), Some(PathBuf::from("t.db")));
        assert_eq!(sqlite_file("sqlite://t.db?mode=ro"), None);
        assert_eq!(sqlite_file("sqlite://"), None);
        assert_eq!(sqlite_file("memory://"), None);
    }

    #[cfg(unix)]
    #[test]
    fn created_files_and_directories_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a/b/t.db");
        create_private_sqlite(&format!("sqlite://{}", file.display())).unwrap();
        assert_eq!(mode_of(&file), Some(0o600));
        assert_eq!(mode_of(&dir.path().join("a")), Some(0o700));
        assert_eq!(mode_of(&dir.path().join("a/b")), Some(0o700));
        // An existing file is left alone, and reported when exposed.
        let url = format!("sqlite://{}", file.display());
        assert!(exposed_files(&url).is_empty());
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        create_private_sqlite(&url).unwrap();
        assert_eq!(exposed_files(&url), vec![(file.clone(), 0o644)]);
    }
}
