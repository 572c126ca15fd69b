//! What a generated conformance test gets its store from.

use std::sync::Arc;

/// The value a conformance test's fixture expression yields: the store
/// under test, and whatever must stay alive while the test runs.
///
/// The macros ([`store_conformance!`](crate::store_conformance),
/// [`refresh_conformance!`](crate::refresh_conformance),
/// [`dbsc_conformance!`](crate::dbsc_conformance)) evaluate the fixture
/// expression afresh in each test, take the store from it with
/// [`store`](Fixture::store), and drop the fixture when the case ends,
/// passed or failed. Two shapes are implemented:
///
/// - `Arc<S>`: the store alone (a [`MemoryStore`](crate::store::MemoryStore),
///   a store under a unique Redis key prefix);
/// - `(Arc<S>, G)`: the store and a guard `G` kept alive for the test and
///   dropped after the store (a `TempDir` holding an SQLite file, a
///   throw-away database dropped in `G`'s `Drop`).
///
/// The store is an associated type, not a parameter, so that the macros
/// can turn `Arc<Self::Store>` into `Arc<dyn Store>`,
/// `Arc<dyn RefreshStore>` or `Arc<dyn DbscStore>` at the test's site,
/// where the concrete type is known.
///
/// ```
/// use std::sync::Arc;
/// use tessera::store::MemoryStore;
/// use tessera::testkit::Fixture;
///
/// /// Stands for a `TempDir` or a throw-away database.
/// struct Scratch;
///
/// let fixture = (Arc::new(MemoryStore::new()), Scratch);
/// let store: Arc<MemoryStore> = fixture.store();
/// assert_eq!(Arc::strong_count(&store), 2);
/// ```
pub trait Fixture {
    /// The store type: a concrete store, or a trait object.
    type Store: ?Sized;

    /// The store under test (a new handle on the same object each call).
    fn store(&self) -> Arc<Self::Store>;
}

impl<S: ?Sized> Fixture for Arc<S> {
    type Store = S;

    fn store(&self) -> Arc<S> {
        Arc::clone(self)
    }
}

/// The store with a guard; tuple fields drop in order, so the store's
/// last handle goes before the guard (a database is dropped after its
/// store let go of it).
impl<S: ?Sized, G> Fixture for (Arc<S>, G) {
    type Store = S;

    fn store(&self) -> Arc<S> {
        Arc::clone(&self.0)
    }
}
