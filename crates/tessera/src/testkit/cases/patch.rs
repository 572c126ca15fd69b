//! Conformance cases of [`Store::patch`]: typed changes applied to the
//! latest stored record in one store operation.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::task::JoinSet;

use crate::policy::SessionClass;
use crate::record::SessionRecord;
use crate::store::{Activity, Patch, PatchOp, PatchOutcome, PatchRefusal, Store};
use crate::testkit::record_at;
use crate::time::{Clock, SystemClock, Timestamp};

const HOUR: i64 = 3_600_000;

fn now() -> Timestamp {
    SystemClock.now()
}

async fn create(store: &Arc<dyn Store>, user: Option<&str>) -> SessionRecord {
    let (_, record) = record_at(user, now(), HOUR);
    store.create(&record).await.expect("create");
    record
}

fn applied(outcome: PatchOutcome, what: &str) -> SessionRecord {
    match outcome {
        PatchOutcome::Applied(record) => record,
        other => panic!("{what}: expected Applied, got {other:?}"),
    }
}

fn inc(key: &str, by: i64) -> PatchOp {
    PatchOp::Increment {
        key: key.into(),
        by,
    }
}

pub async fn patch_sets_removes_and_increments_in_one_write(store: Arc<dyn Store>) {
    let user = crate::testkit::unique_user("patch");
    let record = create(&store, Some(&user)).await;
    let patch = Patch::new(vec![
        PatchOp::Set {
            key: "theme".into(),
            value: json!("dark"),
        },
        PatchOp::Remove { key: "k".into() },
        inc("n", 3),
        inc("n", -1),
        PatchOp::Set {
            key: "big".into(),
            value: json!({"ints": [9007199254740993_u64, -1], "f": 0.1, "e": [], "o": {}, "s": "é\"\\\n"}),
        },
    ]);
    // Without a base (the store reads the latest itself) and with one.
    let first = applied(
        store
            .patch(&record.hash, None, &patch, now())
            .await
            .unwrap(),
        "patch without a base",
    );
    assert_eq!(first.version, record.version + 1);
    assert_eq!(first.data["theme"], "dark");
    assert_eq!(first.data["n"], 2);
    assert!(!first.data.contains_key("k"), "removed key stays removed");
    let second = applied(
        store
            .patch(
                &record.hash,
                Some(&first),
                &Patch::new(vec![inc("n", 1)]),
                now(),
            )
            .await
            .unwrap(),
        "patch from the loaded copy",
    );
    assert_eq!(second.version, record.version + 2);
    assert_eq!(second.data["n"], 3);
    let loaded = store.load(&record.hash).await.unwrap().expect("record");
    assert_eq!(loaded, second, "the outcome is the record as stored");
    assert_eq!(
        loaded.data["big"],
        json!({"ints": [9007199254740993_u64, -1], "f": 0.1, "e": [], "o": {}, "s": "é\"\\\n"}),
        "values are stored exactly (no float rounding, [] stays an array)"
    );
    assert_eq!(
        loaded.handle, record.handle,
        "a patch never changes identity"
    );
    assert_eq!(loaded.user_id, record.user_id);
    assert_eq!(loaded.deadlines, record.deadlines, "no activity, no touch");
}

pub async fn patch_refusals_write_nothing(store: Arc<dyn Store>) {
    let record = create(&store, None).await;
    let refusals = [
        (
            PatchRefusal::Expectation,
            Patch::new(vec![
                PatchOp::Set {
                    key: "x".into(),
                    value: json!(1),
                },
                PatchOp::CompareAndSet {
                    key: "k".into(),
                    expected: Some(json!("not what is stored")),
                    new: None,
                },
            ]),
        ),
        (PatchRefusal::NotAnInteger, Patch::new(vec![inc("k", 1)])),
        (
            PatchRefusal::NotAnInteger,
            Patch::new(vec![
                PatchOp::Set {
                    key: "m".into(),
                    value: json!(i64::MAX),
                },
                inc("m", 1),
            ]),
        ),
        (
            PatchRefusal::TooLarge,
            Patch {
                max_data_bytes: Some(64),
                ..Patch::new(vec![PatchOp::Set {
                    key: "blob".into(),
                    value: json!("x".repeat(100)),
                }])
            },
        ),
    ];
    for (want, patch) in refusals {
        match store
            .patch(&record.hash, None, &patch, now())
            .await
            .unwrap()
        {
            PatchOutcome::Refused { why, record: seen } => {
                assert_eq!(why, want);
                assert_eq!(seen, record, "{want:?}: the stored record comes back");
            }
            other => panic!("{want:?}: expected a refusal, got {other:?}"),
        }
        let stored = store.load(&record.hash).await.unwrap().expect("record");
        assert_eq!(stored, record, "{want:?}: nothing was written");
    }
    // The expectation that holds applies (absent = None).
    let cas = Patch::new(vec![PatchOp::CompareAndSet {
        key: "k".into(),
        expected: Some(json!({"n": 1, "s": "v"})),
        new: Some(json!(7)),
    }]);
    let written = applied(
        store.patch(&record.hash, None, &cas, now()).await.unwrap(),
        "a holding expectation",
    );
    assert_eq!(written.data["k"], 7);
}

pub async fn patch_of_missing_or_expired_is_missing_and_resurrects_nothing(store: Arc<dyn Store>) {
    let patch = Patch::new(vec![PatchOp::Set {
        key: "late".into(),
        value: json!(true),
    }]);
    let deleted = create(&store, None).await;
    assert!(store.delete(&deleted.hash).await.unwrap());
    for base in [None, Some(&deleted)] {
        let outcome = store
            .patch(&deleted.hash, base, &patch, now())
            .await
            .unwrap();
        assert_eq!(outcome, PatchOutcome::Missing, "deleted session");
    }
    assert!(
        store.load(&deleted.hash).await.unwrap().is_none(),
        "not resurrected"
    );

    // Idle deadline passed (the record is still stored: absolute is later).
    let (_, stale) = record_at(
        None,
        Timestamp::from_millis(now().as_millis() - 2_000),
        1_000,
    );
    store.create(&stale).await.expect("create");
    for base in [None, Some(&stale)] {
        let outcome = store.patch(&stale.hash, base, &patch, now()).await.unwrap();
        assert_eq!(outcome, PatchOutcome::Missing, "idle-expired session");
    }
    if let Some(kept) = store.load(&stale.hash).await.unwrap() {
        assert_eq!(kept, stale, "an expired record is not written");
    }

    // A remember-class record the policy no longer offers is held to the
    // default lifetime from its creation: past it, the patch is refused.
    let (_, mut old) = record_at(
        None,
        Timestamp::from_millis(now().as_millis() - 5_000),
        HOUR,
    );
    old.class = SessionClass::Remember;
    store.create(&old).await.expect("create");
    let capped = Patch {
        remember_cap: Some(Duration::from_secs(2)),
        ..patch.clone()
    };
    let outcome = store.patch(&old.hash, None, &capped, now()).await.unwrap();
    assert_eq!(
        outcome,
        PatchOutcome::Missing,
        "held to the default lifetime"
    );
    assert_eq!(store.load(&old.hash).await.unwrap().expect("record"), old);
}

pub async fn patch_activity_moves_the_idle_deadline_by_class(store: Arc<dyn Store>) {
    let activity = Activity {
        idle: Duration::from_secs(60),
        remember_idle: Duration::from_secs(600),
    };
    for class in [SessionClass::Default, SessionClass::Remember] {
        let (_, mut record) = record_at(None, now(), HOUR);
        record.class = class;
        store.create(&record).await.expect("create");
        let at = now();
        let patch = Patch {
            activity: Some(activity),
            ..Patch::default()
        };
        let written = applied(
            store.patch(&record.hash, None, &patch, at).await.unwrap(),
            "touch",
        );
        let idle = match class {
            SessionClass::Remember => activity.remember_idle,
            SessionClass::Default => activity.idle,
        };
        assert_eq!(written.last_seen_at, at);
        assert_eq!(written.deadlines.idle, at + idle, "{class:?}");
        assert_eq!(written.deadlines.absolute, record.deadlines.absolute);
        assert_eq!(written.class, class);
        assert_eq!(
            store.load(&record.hash).await.unwrap().expect("record"),
            written
        );
    }
}

/// No lost update: 1,000 concurrent increments, half of them from a stale
/// loaded copy, all counted exactly.
pub async fn concurrent_patch_increments_lose_nothing(store: Arc<dyn Store>) {
    const N: i64 = 1_000;
    let record = create(&store, None).await;
    let record = Arc::new(record);
    let mut tasks = JoinSet::new();
    for i in 0..N {
        let store = store.clone();
        let record = record.clone();
        tasks.spawn(async move {
            let base = (i % 2 == 0).then_some(&*record);
            let patch = Patch::new(vec![inc("n", 1)]);
            let outcome = store.patch(&record.hash, base, &patch, now()).await;
            applied(outcome.expect("patch"), "concurrent increment");
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task");
    }
    let loaded = store.load(&record.hash).await.unwrap().expect("record");
    assert_eq!(loaded.data["n"], json!(N), "every increment kept");
    assert_eq!(loaded.data["k"], record.data["k"], "other keys untouched");
    assert_eq!(loaded.version, record.version + N.unsigned_abs());
}
