//! Lifetime classes: the remember class kept through round trips,
//! touches and rotation; an unconfigured class refused.

use std::sync::Arc;

use serde_json::json;

use super::now;
use crate::manager::SessionManager;
use crate::policy::ExpiryReason;
use crate::record::{ClientMeta, Data};
use crate::store::Store;
use crate::testkit::unique_user;
use crate::time::Clock;
use crate::{Access, SessionError};

/// Timeouts of the lifetime-class cases: the remember class lives far
/// longer than the default one, so every deadline shows which class set it.
fn class_policy() -> crate::policy::SessionPolicy {
    use std::time::Duration;
    crate::policy::SessionPolicy::default()
        .with_idle_timeout(Duration::from_secs(10 * 60))
        .with_absolute_timeout(Duration::from_secs(3600))
        .with_touch_step(Duration::from_secs(60))
        .with_remember(
            Duration::from_secs(2 * 3600),
            Duration::from_secs(24 * 3600),
        )
}

pub async fn remember_class_survives_round_trips_touches_and_rotation(store: Arc<dyn Store>) {
    use std::time::Duration;

    use crate::manager::Renewal;
    use crate::policy::SessionClass;
    use crate::record::DataChanges;

    let min = |n: u64| Duration::from_secs(n * 60);
    let clock = crate::time::ManualClock::new(now());
    let manager = SessionManager::builder_from_arc(store.clone())
        .policy(class_policy())
        .clock(clock.clone())
        .build()
        .unwrap();
    let user = unique_user("remember");
    let start = clock.now();
    let issued = manager
        .create_with_class(
            Some(user.clone()),
            Data::new(),
            ClientMeta::default(),
            SessionClass::Remember,
        )
        .await
        .unwrap();
    assert_eq!(issued.record.class, SessionClass::Remember);
    assert_eq!(issued.record.deadlines.idle, start + min(120));
    assert_eq!(issued.record.deadlines.absolute, start + min(24 * 60));
    assert_eq!(issued.max_age(start), min(24 * 60));
    let stored = store
        .load(&issued.record.hash)
        .await
        .unwrap()
        .expect("record");
    assert_eq!(stored, issued.record, "the class must be stored");

    // Past the default idle timeout, not past the remember one: alive, and
    // the touch moves the idle deadline by the remember idle timeout.
    clock.advance(min(30));
    let touched = manager
        .load(issued.token.expose(), Access::Activity)
        .await
        .expect("a remember session outlives the default idle timeout");
    assert_eq!(touched.class, SessionClass::Remember);
    assert_eq!(touched.deadlines.idle, clock.now() + min(120));
    assert_eq!(touched.deadlines.absolute, start + min(24 * 60));
    let stored = store.load(&touched.hash).await.unwrap().expect("record");
    assert_eq!(stored, touched);

    // A data change counts as activity under the same class.
    clock.advance(min(5));
    let mut changes = DataChanges::default();
    changes.set("theme", json!("dark"));
    let changed = manager
        .modify(&touched.hash, &changes, Access::Activity)
        .await
        .unwrap();
    assert_eq!(changed.class, SessionClass::Remember);
    assert_eq!(changed.deadlines.idle, clock.now() + min(120));

    // A plain rotation keeps the class and the absolute deadline.
    clock.advance(min(5));
    let rotated = manager
        .rotate(&changed.hash, Renewal::Rotate, &DataChanges::default())
        .await
        .unwrap();
    assert_eq!(rotated.record.class, SessionClass::Remember);
    assert_eq!(rotated.record.deadlines.idle, clock.now() + min(120));
    assert_eq!(rotated.record.deadlines.absolute, start + min(24 * 60));
    let stored = store
        .load(&rotated.record.hash)
        .await
        .unwrap()
        .expect("record");
    assert_eq!(stored, rotated.record);

    // Step-up keeps the class and starts fresh deadlines of it.
    clock.advance(min(5));
    let stepped = manager
        .rotate(
            &rotated.record.hash,
            Renewal::Reauthenticate,
            &DataChanges::default(),
        )
        .await
        .unwrap();
    assert_eq!(stepped.record.class, SessionClass::Remember);
    assert_eq!(
        stepped.record.deadlines.absolute,
        clock.now() + min(24 * 60)
    );
    assert_eq!(stepped.record.authenticated_at, Some(clock.now()));

    // A sign-in sets the class the caller asks for: here back to default,
    // with default deadlines, stored as such.
    let login = Renewal::Login {
        user_id: user.clone(),
    };
    let plain = manager
        .rotate_with_class(
            &stepped.record.hash,
            login.clone(),
            &DataChanges::default(),
            Some(SessionClass::Default),
        )
        .await
        .unwrap();
    assert_eq!(plain.record.class, SessionClass::Default);
    assert_eq!(plain.record.deadlines.idle, clock.now() + min(10));
    assert_eq!(plain.record.deadlines.absolute, clock.now() + min(60));
    let stored = store
        .load(&plain.record.hash)
        .await
        .unwrap()
        .expect("record");
    assert_eq!(stored, plain.record);

    // ... and from default to remember.
    let remembered = manager
        .rotate_with_class(
            &plain.record.hash,
            login,
            &DataChanges::default(),
            Some(SessionClass::Remember),
        )
        .await
        .unwrap();
    assert_eq!(remembered.record.class, SessionClass::Remember);
    assert_eq!(remembered.record.deadlines.idle, clock.now() + min(120));
    let stored = store
        .load(&remembered.record.hash)
        .await
        .unwrap()
        .expect("record");
    assert_eq!(stored, remembered.record);
    let listed = manager.list_user(&user).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].class, SessionClass::Remember);

    // A plain rotation cannot change the class.
    let refused = manager
        .rotate_with_class(
            &remembered.record.hash,
            Renewal::Rotate,
            &DataChanges::default(),
            Some(SessionClass::Default),
        )
        .await;
    assert!(matches!(refused, Err(SessionError::Unsupported(_))));

    // The remember session does end at its own idle timeout.
    clock.advance(min(120));
    match manager
        .load(remembered.token.expose(), Access::Status)
        .await
    {
        Err(SessionError::Expired {
            reason: ExpiryReason::Idle,
        }) => {}
        other => panic!("expected expired_idle, got {other:?}"),
    }
}

pub async fn unconfigured_remember_class_is_refused_and_stores_nothing(store: Arc<dyn Store>) {
    use crate::policy::SessionClass;

    let manager = SessionManager::builder_from_arc(store.clone())
        .build()
        .unwrap();
    let user = unique_user("no-remember");
    let refused = manager
        .create_with_class(
            Some(user.clone()),
            Data::new(),
            ClientMeta::default(),
            SessionClass::Remember,
        )
        .await;
    assert!(matches!(refused, Err(SessionError::Unsupported(_))));
    assert!(manager.list_user(&user).await.unwrap().is_empty());
    // Nor can a sign-in switch an existing session to it.
    let issued = manager
        .create(Some(user.clone()), Data::new(), ClientMeta::default())
        .await
        .unwrap();
    let refused = manager
        .rotate_with_class(
            &issued.record.hash,
            crate::manager::Renewal::Login {
                user_id: user.clone(),
            },
            &crate::record::DataChanges::default(),
            Some(SessionClass::Remember),
        )
        .await;
    assert!(matches!(refused, Err(SessionError::Unsupported(_))));
    let stored = store
        .load(&issued.record.hash)
        .await
        .unwrap()
        .expect("record");
    assert_eq!(stored, issued.record, "a refused sign-in changes nothing");
}
