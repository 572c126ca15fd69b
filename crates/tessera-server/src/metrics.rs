//! Prometheus metrics.
//!
//! Session lifecycle counters are derived from the audit events (a
//! `tracing` layer watches the `tessera::audit` target), so the core stays
//! the single source of truth and no code path can change a session without
//! being counted. Store latency is measured by wrapping the store
//! ([`MeteredStore`]).

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tessera::StoreError;
use tessera::ended::{Ended, Revocation};
use tessera::not_before::{NotBefore, Scope};
use tessera::record::{SessionHandle, SessionRecord};
use tessera::refresh::{RefreshRecord, RefreshStore, RefreshUse};
use tessera::store::{CasOutcome, ModifyFn, Patch, PatchOutcome, Store};
use tessera::time::Timestamp;
use tessera::token::{SECRET_LEN, TokenHash};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::Context;

/// Sessions created.
pub const SESSIONS_CREATED: &str = "tessera_sessions_created_total";
/// Tokens rotated (including sign-in and re-authentication).
pub const SESSIONS_ROTATED: &str = "tessera_sessions_rotated_total";
/// Sessions ended by sign-out.
pub const SESSIONS_DESTROYED: &str = "tessera_sessions_destroyed_total";
/// Sessions found expired (label `reason`: `idle` or `absolute`).
pub const SESSIONS_EXPIRED: &str = "tessera_sessions_expired_total";
/// Sessions revoked by someone other than their holder.
pub const SESSIONS_REVOKED: &str = "tessera_sessions_revoked_total";
/// Requests refused by the CSRF/origin guard.
pub const CSRF_REJECTIONS: &str = "tessera_csrf_rejections_total";
/// Failed sign-ins.
pub const LOGIN_FAILURES: &str = "tessera_login_failures_total";
/// Sign-ins refused by the rate limiter.
pub const LOGIN_RATE_LIMITED: &str = "tessera_login_rate_limited_total";
/// Password verifications actually run (Argon2 computations for sign-in
/// and re-authentication), whatever their outcome: the guesses evaluated.
pub const PASSWORD_VERIFICATIONS: &str = "tessera_password_verifications_total";
/// Password checks refused because every hashing slot was taken (503).
pub const PASSWORD_ADMISSION_REFUSED: &str = "tessera_password_admission_refused_total";
/// Refresh tokens exchanged for a new pair (token mode).
pub const TOKENS_REFRESHED: &str = "tessera_tokens_refreshed_total";
/// Used refresh tokens presented again: families revoked as suspected theft
/// (RFC 9700 §4.14.2). Alert on any increase.
pub const REFRESH_REUSE_DETECTED: &str = "tessera_refresh_reuse_detected_total";
/// Device-bound session (DBSC) events, label `event`: `registered`,
/// `key_mismatch` (a refresh proof from another key: the session was
/// revoked; alert on any increase), `refresh_skipped` (the browser gave up
/// a refresh), `unbound_request` (a bound session's request without its
/// bound cookie: served in additive mode, refused in required mode).
pub const DBSC_EVENTS: &str = "tessera_dbsc_events_total";
/// Store call latency in seconds (label `op`). With the session cache
/// on, only calls that reach the store are measured: a cache hit is not a
/// store call.
pub const STORE_LATENCY: &str = "tessera_store_latency_seconds";

// The session cache (`cache = "on"`, src/cache.rs); exported only when it
// is on, read from its counters at each scrape.
/// Session loads answered from this instance's cache.
pub const CACHE_HITS: &str = "tessera_cache_hits_total";
/// Session loads that went to the store (including every load while the
/// invalidation channel is down).
pub const CACHE_MISSES: &str = "tessera_cache_misses_total";
/// Invalidation messages received from the channel.
pub const CACHE_INVALIDATIONS_RECEIVED: &str = "tessera_cache_invalidations_received_total";
/// Times the whole cache was dropped: channel lost or back, "everyone"
/// revocations, unreadable messages. A steady rise means a flapping
/// channel.
pub const CACHE_FLUSHES: &str = "tessera_cache_flushes_total";
/// Invalidations this instance published.
pub const CACHE_INVALIDATIONS_PUBLISHED: &str = "tessera_cache_invalidations_published_total";
/// Invalidations this instance could not publish (the other instances
/// then see the change within `cache_max_staleness`). Alert on any
/// increase.
pub const CACHE_PUBLISH_FAILURES: &str = "tessera_cache_publish_failures_total";
/// Sessions now cached (approximate).
pub const CACHE_ENTRIES: &str = "tessera_cache_entries";
/// Estimated bytes of the sessions now cached.
pub const CACHE_BYTES: &str = "tessera_cache_bytes";
/// 1 while the cache serves (its channel is subscribed, or it needs
/// none), 0 while it is bypassed.
pub const CACHE_LIVE: &str = "tessera_cache_live";

// The API-key memory (with the cache on and an invalidation channel,
// src/api_keys.rs); exported only when it is on.
/// `/v1` keys answered from memory.
pub const API_KEY_MEMORY_HITS: &str = "tessera_api_key_memory_hits_total";
/// `/v1` keys looked up in the database while the memory is on.
pub const API_KEY_MEMORY_MISSES: &str = "tessera_api_key_memory_misses_total";
/// Keys remembered now (approximate).
pub const API_KEY_MEMORY_ENTRIES: &str = "tessera_api_key_memory_entries";

/// Installs the global Prometheus recorder. Call once per process.
///
/// # Errors
///
/// If a recorder is already installed.
pub fn install() -> Result<PrometheusHandle, String> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(STORE_LATENCY.to_owned()),
            &[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ],
        )
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())
}

/// Registers every metric at zero so `/metrics` lists them from the start.
pub fn describe() {
    for name in [
        SESSIONS_CREATED,
        SESSIONS_ROTATED,
        SESSIONS_DESTROYED,
        SESSIONS_REVOKED,
        CSRF_REJECTIONS,
        LOGIN_FAILURES,
        LOGIN_RATE_LIMITED,
        PASSWORD_VERIFICATIONS,
        PASSWORD_ADMISSION_REFUSED,
        TOKENS_REFRESHED,
        REFRESH_REUSE_DETECTED,
    ] {
        metrics::counter!(name).absolute(0);
    }
    for reason in ["idle", "absolute"] {
        metrics::counter!(SESSIONS_EXPIRED, "reason" => reason).absolute(0);
    }
    for event in DBSC_EVENT_NAMES {
        metrics::counter!(DBSC_EVENTS, "event" => event).absolute(0);
    }
}

/// The `event` labels of [`DBSC_EVENTS`].
const DBSC_EVENT_NAMES: [&str; 4] = [
    "registered",
    "key_mismatch",
    "refresh_skipped",
    "unbound_request",
];

/// Copies the session cache's counters into the recorder (called before
/// each scrape is rendered, so the figures are current).
pub fn export_cache(stats: &tessera::cache::CacheStats) {
    metrics::counter!(CACHE_HITS).absolute(stats.hits);
    metrics::counter!(CACHE_MISSES).absolute(stats.misses);
    metrics::counter!(CACHE_INVALIDATIONS_RECEIVED).absolute(stats.invalidations_received);
    metrics::counter!(CACHE_FLUSHES).absolute(stats.flushes);
    metrics::counter!(CACHE_INVALIDATIONS_PUBLISHED).absolute(stats.published);
    metrics::counter!(CACHE_PUBLISH_FAILURES).absolute(stats.publish_failures);
    // Gauges are f64; these sizes are far below 2^52.
    #[allow(clippy::cast_precision_loss)]
    {
        metrics::gauge!(CACHE_ENTRIES).set(stats.entries as f64);
        metrics::gauge!(CACHE_BYTES).set(stats.weighted_bytes as f64);
    }
    metrics::gauge!(CACHE_LIVE).set(if stats.live { 1.0 } else { 0.0 });
}

/// Copies the API-key memory's counters (`ApiKeys::memory_stats`) into
/// the recorder, like [`export_cache`].
pub fn export_api_keys(hits: u64, misses: u64, entries: u64) {
    metrics::counter!(API_KEY_MEMORY_HITS).absolute(hits);
    metrics::counter!(API_KEY_MEMORY_MISSES).absolute(misses);
    // Far below 2^52.
    #[allow(clippy::cast_precision_loss)]
    metrics::gauge!(API_KEY_MEMORY_ENTRIES).set(entries as f64);
}

/// A `tracing` layer that turns audit events into counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuditMetrics;

#[derive(Default)]
struct EventFields {
    event: Option<String>,
    detail: Option<String>,
}

impl Visit for EventFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "event" => self.event = Some(value.to_owned()),
            "detail" => self.detail = Some(value.to_owned()),
            _ => {}
        }
    }
    fn record_debug(&mut self, _field: &Field, _value: &dyn std::fmt::Debug) {}
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for AuditMetrics {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != tessera::audit::TARGET {
            return;
        }
        let mut fields = EventFields::default();
        event.record(&mut fields);
        let Some(name) = fields.event else { return };
        match name.as_str() {
            "created" => metrics::counter!(SESSIONS_CREATED).increment(1),
            "rotated" | "reauthenticated" => metrics::counter!(SESSIONS_ROTATED).increment(1),
            "destroyed" => metrics::counter!(SESSIONS_DESTROYED).increment(1),
            "expired_idle" => metrics::counter!(SESSIONS_EXPIRED, "reason" => "idle").increment(1),
            "expired_absolute" => {
                metrics::counter!(SESSIONS_EXPIRED, "reason" => "absolute").increment(1);
            }
            // Mass revocations are counted where their count is known
            // (`count_revoked`); the core's one event per call carries none.
            "revoked" if !fields.detail.unwrap_or_default().starts_with("all ") => {
                metrics::counter!(SESSIONS_REVOKED).increment(1);
            }
            "csrf_rejected" => metrics::counter!(CSRF_REJECTIONS).increment(1),
            "login_failed" => metrics::counter!(LOGIN_FAILURES).increment(1),
            "rate_limited" => metrics::counter!(LOGIN_RATE_LIMITED).increment(1),
            "refreshed" => metrics::counter!(TOKENS_REFRESHED).increment(1),
            "refresh_reuse_detected" => metrics::counter!(REFRESH_REUSE_DETECTED).increment(1),
            other => {
                if let Some(event) = other
                    .strip_prefix("dbsc_")
                    .and_then(|e| DBSC_EVENT_NAMES.into_iter().find(|n| *n == e))
                {
                    metrics::counter!(DBSC_EVENTS, "event" => event).increment(1);
                }
            }
        }
    }
}

/// Counts `n` sessions revoked by one mass revocation.
pub fn count_revoked(n: u64) {
    metrics::counter!(SESSIONS_REVOKED).increment(n);
}

/// A store wrapper that records the latency of every call, session and
/// refresh-token calls alike (the same backend serves both).
pub struct MeteredStore {
    inner: Arc<dyn Store>,
    refresh: Arc<dyn RefreshStore>,
}

impl MeteredStore {
    /// Wraps `inner`, which serves both sessions and refresh tokens.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tessera::store::MemoryStore;
    /// let store = tessera_server::metrics::MeteredStore::new(Arc::new(MemoryStore::new()));
    /// # let _ = store;
    /// ```
    pub fn new<S: Store + RefreshStore>(inner: Arc<S>) -> Self {
        Self {
            inner: inner.clone(),
            refresh: inner,
        }
    }
}

fn observe(op: &'static str, started: Instant) {
    metrics::histogram!(STORE_LATENCY, "op" => op).record(started.elapsed().as_secs_f64());
}

#[async_trait]
impl Store for MeteredStore {
    async fn create(&self, record: &SessionRecord) -> Result<(), StoreError> {
        let t = Instant::now();
        let r = self.inner.create(record).await;
        observe("create", t);
        r
    }

    async fn create_capped(
        &self,
        record: &SessionRecord,
        cap: tessera::policy::SessionCap,
        now: Timestamp,
    ) -> Result<tessera::store::Capped, StoreError> {
        let t = Instant::now();
        let r = self.inner.create_capped(record, cap, now).await;
        observe("create", t);
        r
    }

    async fn raise_not_before(
        &self,
        scope: Scope<'_>,
        to: NotBefore,
    ) -> Result<NotBefore, StoreError> {
        let t = Instant::now();
        let r = self.inner.raise_not_before(scope, to).await;
        observe("raise_not_before", t);
        r
    }
    async fn not_before(&self, scope: Scope<'_>) -> Result<Option<NotBefore>, StoreError> {
        let t = Instant::now();
        let r = self.inner.not_before(scope).await;
        observe("not_before", t);
        r
    }

    async fn load(&self, hash: &TokenHash) -> Result<Option<SessionRecord>, StoreError> {
        let t = Instant::now();
        let r = self.inner.load(hash).await;
        observe("load", t);
        r
    }

    /// Not a store call, so not timed: the latency histogram is the
    /// backend's.
    fn load_in_memory(&self, hash: &TokenHash, now: Timestamp) -> Option<SessionRecord> {
        self.inner.load_in_memory(hash, now)
    }

    async fn update(
        &self,
        expected_version: u64,
        record: &SessionRecord,
        now: Timestamp,
    ) -> Result<CasOutcome, StoreError> {
        let t = Instant::now();
        let r = self.inner.update(expected_version, record, now).await;
        observe("update", t);
        r
    }

    async fn rotate(
        &self,
        old: &TokenHash,
        expected_version: u64,
        new: &SessionRecord,
        now: Timestamp,
    ) -> Result<CasOutcome, StoreError> {
        let t = Instant::now();
        let r = self.inner.rotate(old, expected_version, new, now).await;
        observe("rotate", t);
        r
    }

    async fn delete(&self, hash: &TokenHash) -> Result<bool, StoreError> {
        let t = Instant::now();
        let r = self.inner.delete(hash).await;
        observe("delete", t);
        r
    }

    async fn delete_by_handle(
        &self,
        handle: &SessionHandle,
        owner: Option<&str>,
        why: Revocation,
    ) -> Result<bool, StoreError> {
        let t = Instant::now();
        let r = self.inner.delete_by_handle(handle, owner, why).await;
        observe("delete_by_handle", t);
        r
    }

    async fn end(&self, hash: &TokenHash, why: Ended) -> Result<bool, StoreError> {
        let t = Instant::now();
        let r = self.inner.end(hash, why).await;
        observe("end", t);
        r
    }

    async fn ended(&self, hash: &TokenHash, now: Timestamp) -> Result<Option<Ended>, StoreError> {
        let t = Instant::now();
        let r = self.inner.ended(hash, now).await;
        observe("ended", t);
        r
    }

    async fn list_by_user(
        &self,
        user_id: &str,
        now: Timestamp,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let t = Instant::now();
        let r = self.inner.list_by_user(user_id, now).await;
        observe("list_by_user", t);
        r
    }

    async fn delete_by_user(
        &self,
        user_id: &str,
        except: Option<&SessionHandle>,
        why: Revocation,
    ) -> Result<u64, StoreError> {
        let t = Instant::now();
        let r = self.inner.delete_by_user(user_id, except, why).await;
        observe("delete_by_user", t);
        r
    }

    async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<u64, StoreError> {
        let t = Instant::now();
        let r = self.inner.purge_expired(now, limit).await;
        observe("purge_expired", t);
        r
    }

    async fn delete_all(&self) -> Result<u64, StoreError> {
        let t = Instant::now();
        let r = self.inner.delete_all().await;
        observe("delete_all", t);
        r
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let t = Instant::now();
        let r = self.inner.ping().await;
        observe("ping", t);
        r
    }

    async fn modify(
        &self,
        hash: &TokenHash,
        now: Timestamp,
        f: ModifyFn<'_>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let t = Instant::now();
        let r = self.inner.modify(hash, now, f).await;
        observe("modify", t);
        r
    }

    // Forwarded, not left to the provided method: the inner store may do
    // the compare-and-set in one round trip (Redis runs one script).
    async fn modify_loaded(
        &self,
        current: &SessionRecord,
        now: Timestamp,
        f: ModifyFn<'_>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let t = Instant::now();
        let r = self.inner.modify_loaded(current, now, f).await;
        observe("modify_loaded", t);
        r
    }

    async fn patch(
        &self,
        hash: &TokenHash,
        base: Option<&SessionRecord>,
        patch: &Patch,
        now: Timestamp,
    ) -> Result<PatchOutcome, StoreError> {
        let t = Instant::now();
        let r = self.inner.patch(hash, base, patch, now).await;
        observe("patch", t);
        r
    }
}

#[async_trait]
impl RefreshStore for MeteredStore {
    async fn insert_refresh(&self, record: &RefreshRecord) -> Result<(), StoreError> {
        let t = Instant::now();
        let r = self.refresh.insert_refresh(record).await;
        observe("insert_refresh", t);
        r
    }

    async fn load_refresh(&self, hash: &TokenHash) -> Result<Option<RefreshRecord>, StoreError> {
        let t = Instant::now();
        let r = self.refresh.load_refresh(hash).await;
        observe("load_refresh", t);
        r
    }

    async fn use_refresh(
        &self,
        parent: &TokenHash,
        child: &RefreshRecord,
        sealed_child: &[u8; SECRET_LEN],
        now: Timestamp,
    ) -> Result<RefreshUse, StoreError> {
        let t = Instant::now();
        let r = self
            .refresh
            .use_refresh(parent, child, sealed_child, now)
            .await;
        observe("use_refresh", t);
        r
    }

    async fn delete_refresh_family(&self, family: &SessionHandle) -> Result<u64, StoreError> {
        let t = Instant::now();
        let r = self.refresh.delete_refresh_family(family).await;
        observe("delete_refresh_family", t);
        r
    }

    async fn load_session_by_handle(
        &self,
        handle: &SessionHandle,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let t = Instant::now();
        let r = self.refresh.load_session_by_handle(handle).await;
        observe("load_session_by_handle", t);
        r
    }
}
