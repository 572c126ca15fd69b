use super::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The plan of `statement` as SQLite's `EXPLAIN QUERY PLAN` details.
async fn plan(
    store: &SqliteStore,
    statement: &str,
    binds: usize,
) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let text = format!("EXPLAIN QUERY PLAN {statement}");
    let mut conn = store.reader.acquire().await?;
    let mut q = sqlx::query(&text);
    for _ in 0..binds {
        q = q.bind(0_i64);
    }
    let details = q
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| sqlx::Row::try_get::<String, _>(row, "detail"))
        .collect::<Result<_, _>>()?;
    Ok(details)
}

async fn store() -> Result<(tempfile::TempDir, SqliteStore), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("plan.db").display());
    let store = SqliteStore::connect(&url).await?;
    Ok((dir, store))
}

fn assert_indexed(plan: &[String], index: &str) {
    assert!(
        plan.iter()
            .any(|d| d.starts_with("SEARCH") && d.contains(index)),
        "expected a search on {index}: {plan:?}"
    );
    // A full table scan reads every session: never acceptable here.
    assert!(
        !plan
            .iter()
            .any(|d| d.starts_with("SCAN tessera_sessions") && !d.contains("INDEX")),
        "full scan: {plan:?}"
    );
}

#[tokio::test]
async fn sweeper_query_searches_the_deadline_index() -> TestResult {
    let (_dir, store) = store().await?;
    let plan = plan(&store, sql::PURGE, 2).await?;
    assert_indexed(&plan, "tessera_sessions_next_deadline");
    // The outer delete finds each row by its primary key.
    assert!(plan.iter().any(|d| d.contains("PRIMARY KEY")), "{plan:?}");
    // The tombstones of idle expiries read the same rows the same way.
    let buried = super::tests::plan(&store, sql::PURGE_TOMBSTONES, 2).await?;
    assert_indexed(&buried, "tessera_sessions_next_deadline");
    assert!(
        buried.iter().any(|d| d.contains("PRIMARY KEY")),
        "{buried:?}"
    );
    Ok(())
}

#[tokio::test]
async fn user_listing_searches_the_user_index() -> TestResult {
    let (_dir, store) = store().await?;
    assert_indexed(
        &plan(&store, sql::LIST_BY_USER, 2).await?,
        "tessera_sessions_user",
    );
    assert_indexed(
        &plan(&store, sql::DELETE_BY_USER_EXCEPT, 2).await?,
        "tessera_sessions_user",
    );
    Ok(())
}

#[tokio::test]
async fn key_and_handle_lookups_use_their_indexes() -> TestResult {
    let (_dir, store) = store().await?;
    assert_indexed(&plan(&store, sql::SELECT_BY_HASH, 1).await?, "PRIMARY KEY");
    assert_indexed(&plan(&store, &sql::cas_update(), 14).await?, "PRIMARY KEY");
    assert_indexed(
        &plan(&store, sql::DELETE_BY_HANDLE, 1).await?,
        "sqlite_autoindex_tessera_sessions",
    );
    Ok(())
}

#[tokio::test]
async fn refresh_statements_use_their_indexes() -> TestResult {
    let (_dir, store) = store().await?;
    let purge = plan(&store, sql::REFRESH_PURGE, 2).await?;
    assert!(
        purge
            .iter()
            .any(|d| d.starts_with("SEARCH") && d.contains("tessera_refresh_tokens_expires_at")),
        "{purge:?}"
    );
    let family = plan(&store, sql::REFRESH_DELETE_FAMILY, 1).await?;
    assert!(
        family
            .iter()
            .any(|d| d.starts_with("SEARCH") && d.contains("tessera_refresh_tokens_family")),
        "{family:?}"
    );
    for (statement, binds) in [(sql::REFRESH_USE, 5), (sql::REFRESH_SELECT, 1)] {
        let p = plan(&store, statement, binds).await?;
        assert!(
            p.iter()
                .any(|d| d.starts_with("SEARCH") && d.contains("PRIMARY KEY")),
            "{statement}: {p:?}"
        );
        assert!(!p.iter().any(|d| d.starts_with("SCAN")), "{p:?}");
    }
    assert_indexed(
        &plan(&store, sql::SELECT_BY_HANDLE, 1).await?,
        "sqlite_autoindex_tessera_sessions",
    );
    Ok(())
}
