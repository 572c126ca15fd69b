//! Files on disk: the SQLite database and its -wal/-shm files are created
//! 0600 in a 0700 directory; an existing database open to others is
//! reported at start-up.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use crate::common::{Server, demo_login};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn the_database_and_its_wal_files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    // A directory that does not exist yet: created for the database.
    let data = dir.path().join("data/tessera");
    let db = data.join("tessera.db");
    let server = Server::start_on(
        tempfile::tempdir().unwrap(),
        &format!("sqlite://{}", db.display()),
        &[],
    );
    // A sign-in writes, so the WAL and shared-memory files exist.
    demo_login(&server).await;
    assert_eq!(mode(&dir.path().join("data")), 0o700);
    assert_eq!(mode(&data), 0o700);
    for name in ["tessera.db", "tessera.db-wal", "tessera.db-shm"] {
        let file = data.join(name);
        assert!(file.exists(), "{name} was not created");
        assert_eq!(mode(&file), 0o600, "{name}: {:o}", mode(&file));
    }
    assert!(!server.logs().contains("accessible to other users"));
}

#[tokio::test]
async fn an_existing_database_readable_by_others_is_reported() {
    let server = Server::start(&[]);
    let db = server.dir.path().join("tessera.db");
    assert_eq!(mode(&db), 0o600);
    let dir = server.stop();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let server = Server::start_in(dir, &[]);
    let logs = server.logs();
    let warning = logs
        .lines()
        .find(|l| l.contains("accessible to other users"))
        .unwrap_or_else(|| panic!("no warning: {logs}"));
    assert!(warning.contains("tessera.db"), "{warning}");
    assert!(warning.contains("0644"), "{warning}");
    // Reported, not changed behind the operator's back.
    assert_eq!(mode(&db), 0o644);
}
