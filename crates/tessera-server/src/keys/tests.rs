//! Tests of the signing keys: directory and shared-store sources,
//! rotation seen by every instance.

use tessera::time::ManualClock;

use super::shared::{Repo, Shared};
use super::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn config_in(dir: &std::path::Path) -> Config {
    Config {
        keys_dir: Some(dir.join("keys").display().to_string()),
        ..Config::default()
    }
}

async fn memory_db() -> Result<Db, Box<dyn std::error::Error>> {
    Ok(crate::db::open("memory://", 1, Duration::from_secs(5)).await?)
}

/// Keys in a fresh directory on a clock that moves only when told.
struct Fixture {
    _dir: tempfile::TempDir,
    config: Config,
    clock: Arc<ManualClock>,
    db: Db,
    keys: SigningKeys,
    sid: SessionHandle,
}

impl Fixture {
    async fn new() -> Result<Self, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let config = config_in(dir.path());
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_700_000_000_000)));
        let db = memory_db().await?;
        let keys = SigningKeys::open(&config, clock.clone(), &db).await?;
        Ok(Self {
            _dir: dir,
            config,
            clock,
            db,
            keys,
            sid: SessionHandle::generate()?,
        })
    }
}

/// The key directory of `config` as another process ("tessera keys
/// …") sees it: its own handle.
fn elsewhere(config: &Config) -> Result<KeyStore, Box<dyn std::error::Error>> {
    Ok(KeyStore::open(config.keys_path(), retention(config))?)
}

#[tokio::test]
async fn a_rotation_by_another_process_is_picked_up_at_the_next_use() -> TestResult {
    let Fixture {
        _dir,
        config,
        clock,
        keys,
        sid,
        ..
    } = Fixture::new().await?;
    let before = keys.issue("alice", &sid).await?;

    // "tessera keys rotate" elsewhere.
    let new_kid = elsewhere(&config)?.rotate(Algorithm::EdDSA, clock.now())?;

    let after = keys.issue("alice", &sid).await?;
    assert_eq!(after.kid(), &new_kid, "signs with the new key at once");
    assert_ne!(before.kid(), after.kid());
    assert_eq!(keys.jwks().await.keys.len(), 2, "old key still published");
    keys.verify(before.as_str()).await?;
    keys.verify(after.as_str()).await?;

    // After the retention the old key leaves the JWKS.
    clock.advance(retention(&config));
    assert_eq!(keys.jwks().await.keys.len(), 1);
    Ok(())
}

#[tokio::test]
async fn verifying_rereads_the_directory_for_an_unknown_kid_and_once_a_second() -> TestResult {
    let Fixture {
        _dir,
        config,
        clock,
        db,
        keys,
        sid,
    } = Fixture::new().await?;
    let old = keys.issue("alice", &sid).await?;

    // Another instance rotates and signs with the new key; the clock
    // stands still, so only the unknown kid can make this one look.
    let other = SigningKeys::open(&config, clock.clone(), &db).await?;
    elsewhere(&config)?.rotate(Algorithm::EdDSA, clock.now())?;
    let new = other.issue("alice", &sid).await?;
    assert_ne!(new.kid(), old.kid());
    assert_eq!(keys.verify(new.as_str()).await?.claims.sub, "alice");

    // The old key is deleted on disk (say it leaked). Within the
    // second the loaded set still holds it — verifying reads no file
    // per token — and one interval later it is refused.
    elsewhere(&config)?.remove(old.kid())?;
    keys.verify(old.as_str()).await?;
    clock.advance(RECHECK_INTERVAL);
    assert!(matches!(
        keys.verify(old.as_str()).await,
        Err(VerifyError::UnknownKid)
    ));
    keys.verify(new.as_str()).await?;
    Ok(())
}

#[tokio::test]
async fn memory_store_keys_need_no_directory() -> TestResult {
    let config = Config {
        store: "memory://".into(),
        ..Config::default()
    };
    let db = memory_db().await?;
    let keys = SigningKeys::open(&config, Arc::new(tessera::time::SystemClock), &db).await?;
    assert!(matches!(keys.inner.source, Source::Memory));
    assert_eq!(keys.jwks().await.keys.len(), 1);
    Ok(())
}

/// Two instances on one shared key set (here the SQL code path on a
/// SQLite database; the HTTP tests run it on PostgreSQL, MySQL and
/// Redis).
async fn shared_pair(
    clock: &Arc<ManualClock>,
    db: &Db,
) -> Result<(SigningKeys, SigningKeys), Box<dyn std::error::Error>> {
    Ok((open_shared(clock, db).await?, open_shared(clock, db).await?))
}

/// One instance on the shared key set of `db`.
async fn open_shared(
    clock: &Arc<ManualClock>,
    db: &Db,
) -> Result<SigningKeys, Box<dyn std::error::Error>> {
    let config = Config::default();
    let shared = Shared {
        repo: Repo::Db(db.clone()),
        kek: KeyEncryptionKey::from_bytes(&[3; 32])?,
    };
    let (version, keys) = shared
        .open_or_create(Algorithm::EdDSA, retention(&config), clock.now())
        .await?;
    Ok(SigningKeys::assemble(
        &config,
        clock.clone(),
        Source::Shared(Box::new(shared)),
        &keys,
        Seen::Version(version),
    )?)
}

fn shared_of(keys: &SigningKeys) -> &Shared {
    match &keys.inner.source {
        Source::Shared(shared) => shared,
        _ => panic!("not shared"),
    }
}

#[tokio::test]
async fn shared_instances_create_one_set_and_see_each_others_rotations() -> TestResult {
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_700_000_000_000)));
    let db = memory_db().await?;
    let (a, b) = shared_pair(&clock, &db).await?;
    let sid = SessionHandle::generate()?;
    assert_eq!(
        a.jwks().await,
        b.jwks().await,
        "the second found the first's key"
    );

    // No private key in the table, only sealed text.
    let Db::Sqlite(pool) = &db else { panic!() };
    let doc: String = sqlx::query_scalar("SELECT document FROM tessera_signing_keys")
        .fetch_one(pool)
        .await?;
    assert!(
        !doc.contains("PRIVATE KEY") && doc.contains("sealed"),
        "{doc}"
    );

    // A rotates (as `tessera keys rotate` does): B signs with the new
    // key at its next token, and verifies A's new tokens at once
    // through the unknown-kid check, the clock standing still.
    let old = b.issue("alice", &sid).await?;
    let retention = retention(&Config::default());
    let (_, _, new_kid) = shared_of(&a)
        .update(retention, |set| {
            set.rotate(Algorithm::EdDSA, clock.now())
                .map_err(|e| e.to_string())
        })
        .await?;
    let from_a = a.issue("alice", &sid).await?;
    assert_eq!(from_a.kid(), &new_kid);
    b.verify(from_a.as_str()).await?;
    assert_eq!(b.issue("alice", &sid).await?.kid(), &new_kid);
    a.verify(old.as_str()).await?;
    assert_eq!(a.jwks().await.keys.len(), 2);
    assert_eq!(a.jwks().await, b.jwks().await);

    // Removed from the store (a leaked key): refused by both within
    // one recheck interval.
    shared_of(&a)
        .update(retention, |set| Ok(set.remove(old.kid())))
        .await?;
    clock.advance(RECHECK_INTERVAL);
    for keys in [&a, &b] {
        assert!(matches!(
            keys.verify(old.as_str()).await,
            Err(VerifyError::UnknownKid)
        ));
    }
    Ok(())
}

#[tokio::test]
async fn concurrent_rotations_of_the_shared_set_all_take_effect() -> TestResult {
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_700_000_000_000)));
    let db = memory_db().await?;
    let (a, b) = shared_pair(&clock, &db).await?;
    let retention = retention(&Config::default());
    let rotate = |keys: SigningKeys| {
        let clock = clock.clone();
        async move {
            shared_of(&keys)
                .update(retention, |set| {
                    set.rotate(Algorithm::EdDSA, clock.now())
                        .map_err(|e| e.to_string())
                })
                .await
        }
    };
    let (x, y) = tokio::join!(rotate(a.clone()), rotate(b.clone()));
    let (x, y) = (x?, y?);
    assert_ne!(x.2, y.2);
    // One initial key and both rotations: neither write lost the other.
    let (_, set) = shared_of(&a)
        .load(retention)
        .await?
        .ok_or("no shared key set")?;
    assert_eq!(set.keys().count(), 3);
    assert_eq!(set.keys().filter(|k| k.retired_at.is_none()).count(), 1);
    Ok(())
}

#[tokio::test]
async fn a_shared_placement_without_a_key_encryption_key_refuses_to_start() -> TestResult {
    let db = memory_db().await?;
    let config = Config {
        store: "redis://127.0.0.1:1".into(),
        ..Config::default()
    };
    let Err(err) =
        SigningKeys::open_with_kek(&config, Arc::new(tessera::time::SystemClock), &db, None).await
    else {
        return Err("expected an error".into());
    };
    let err = err.to_string();
    assert!(err.contains("TESSERA_KEY_ENCRYPTION_KEY"), "{err}");
    assert!(err.contains("keys_dir"), "{err}");
    Ok(())
}
