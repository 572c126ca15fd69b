//! The security activity table on PostgreSQL and MySQL/MariaDB (SQLite is
//! covered by the unit tests in src/activity.rs): migration 0003, newest
//! first per user, the per-user bound and the retention, with the real
//! databases of scripts/services.sh.

use std::time::Duration;

use tessera_server::activity::{Activity, EventKind, KEEP_PER_USER, NewEvent, RETENTION};

use crate::backends::{MyDatabase, PgDatabase};

fn event<'a>(user: &'a str, at_ms: i64, detail: &'a str) -> NewEvent<'a> {
    NewEvent {
        user,
        at_ms,
        kind: EventKind::SignedIn,
        ip: Some("198.51.100.7"),
        user_agent: Some("curl/8.5.0"),
        detail,
    }
}

async fn bounded_and_expiring(url: &str) {
    let db = tessera_server::db::open(url, 2, Duration::from_secs(10))
        .await
        .unwrap();
    let a = Activity::new(db);
    // User names compare exactly: "Alice" is another account.
    a.record(&event("Alice", 1, "other account")).await.unwrap();
    let details: Vec<String> = (0..KEEP_PER_USER + 5).map(|i| i.to_string()).collect();
    for (i, d) in details.iter().enumerate() {
        let at = 1_000 + i64::try_from(i).unwrap();
        a.record(&event("alice", at, d)).await.unwrap();
    }
    let list = a.list("alice", 1_000).await.unwrap();
    assert_eq!(i64::try_from(list.len()).unwrap(), KEEP_PER_USER);
    assert_eq!(list[0].detail, (KEEP_PER_USER + 4).to_string());
    assert_eq!(list.last().unwrap().detail, "5");
    assert_eq!(list[0].ip.as_deref(), Some("198.51.100.7"));
    assert_eq!(list[0].kind, EventKind::SignedIn);
    assert_eq!(a.list("Alice", 10).await.unwrap().len(), 1);

    // Past the retention, every user's old events go.
    let retention = i64::try_from(RETENTION.as_millis()).unwrap();
    a.record(&event("bob", 2 + retention, "later"))
        .await
        .unwrap();
    assert!(a.list("Alice", 10).await.unwrap().is_empty());
    assert_eq!(a.list("bob", 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn security_events_on_postgresql_are_bounded_and_expire() {
    let db = PgDatabase::create();
    bounded_and_expiring(&db.url).await;
}

#[tokio::test]
async fn security_events_on_mysql_are_bounded_and_expire() {
    let db = MyDatabase::create();
    bounded_and_expiring(&db.url).await;
}
