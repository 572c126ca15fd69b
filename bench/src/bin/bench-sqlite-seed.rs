//! Fills a tessera SQLite database with filler sessions for the scale tests
//! of docs/performance.md ("SQLite with 1,000,000 stored sessions"; "the sweeper deletes
//! 1,000,000 expired records").
//!
//! ```text
//! bench-sqlite-seed <path> <live> <expired>
//! ```
//!
//! The schema comes from the store itself (`SqlStore::connect` runs its
//! migrations). Rows are then inserted in bulk with one statement per
//! 100,000 rows, because a million `Store::create` calls (one fsync'd
//! transaction each) would take longer than the benchmark. Filler rows have
//! random 32-byte hashes, so no token opens them: they only make the table
//! and its indexes as large as a real one. Live rows expire in an hour,
//! expired ones an hour ago. The sessions the load generator uses are then
//! created through the server as usual.

#![forbid(unsafe_code)]

use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use tessera::time::{Clock, SystemClock};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const CHUNK: u64 = 100_000;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: bench-sqlite-seed <path> <live> <expired>";
    let path = args.next().ok_or(usage)?;
    let live: u64 = args.next().ok_or(usage)?.parse()?;
    let expired: u64 = args.next().ok_or(usage)?.parse()?;

    let url = format!("sqlite://{path}");
    // Creates the file and the schema exactly as the server will see it.
    let store = tessera_sql::SqlStore::connect(&url).await?;
    store.close().await;

    let options = SqliteConnectOptions::from_str(&url)?.journal_mode(SqliteJournalMode::Wal);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await?;
    let now = SystemClock.now().as_millis();
    let hour = 3_600_000_i64;
    for (count, deadline, tag) in [(live, now + hour, "live"), (expired, now - hour, "expired")] {
        let mut done = 0;
        while done < count {
            let n = CHUNK.min(count - done);
            sqlx::query(
                "WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?1)
                 INSERT INTO tessera_sessions (hash, handle, user_id, data, created_at,
                     last_seen_at, authenticated_at, idle_deadline, absolute_deadline,
                     next_deadline, version, csrf_secret, client_ip, user_agent)
                 SELECT randomblob(32), 'tsh_' || hex(randomblob(16)),
                     ?2 || '-' || (?3 + i), '{}', ?4 - 60000, ?4 - 60000, ?4 - 60000,
                     ?5, ?5 + 3600000, ?5, 1, randomblob(32), NULL, NULL
                 FROM seq",
            )
            .bind(i64::try_from(n)?)
            .bind(tag)
            .bind(i64::try_from(done)?)
            .bind(now)
            .bind(deadline)
            .execute(&pool)
            .await?;
            done += n;
        }
    }
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM tessera_sessions")
        .fetch_one(&pool)
        .await?;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&pool)
        .await?;
    pool.close().await;
    println!("seeded {path}: live={live} expired={expired} rows={total}");
    Ok(())
}
