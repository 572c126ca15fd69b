//! The admin subcommands: users, sessions, API keys, migrate, sweep.

use std::io::{BufRead, IsTerminal};

use tessera::Revocation;
use tessera::record::SessionHandle;

use crate::api::types::SessionSummary;
use crate::cli::{ApiKeyCommand, SessionsCommand, UserCommand};
use crate::config::Config;
use crate::server::{SWEEP_BATCH, ServerError, build_state};
use crate::store_url::StoreKind;

/// Reads one line (the password) from standard input.
fn read_password() -> Result<String, ServerError> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("password: ");
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        return Err(ServerError::Message(String::from(
            "no password on standard input",
        )));
    }
    Ok(password)
}

/// `tessera migrate`.
///
/// # Errors
///
/// Database errors.
pub async fn migrate(config: Config) -> Result<(), ServerError> {
    let pool = crate::db::connect(&config.database_url(), 1, config.store_timeout).await?;
    let n = crate::db::migrate(&pool).await?;
    println!("database is up to date ({n} migration(s) applied now)");
    // Opening a SQL session store applies its embedded migrations; Redis
    // needs none. Either way this proves the store answers.
    crate::store::open_session_store(&config).await?;
    println!("session store is up to date");
    Ok(())
}

/// `tessera sweep`: deletes every expired session, then exits.
///
/// On the SQL stores it deletes in the server's paced batches
/// ([`SWEEP_BATCH`] rows, resting [`tessera_sql::DEFAULT_PACE`] times as
/// long as each took), so running it next to live servers does not starve
/// their reads; other stores purge 1,000 records at a time back to back.
///
/// # Errors
///
/// Store errors.
pub async fn sweep(config: Config) -> Result<(), ServerError> {
    let state = build_state(config, None).await?;
    let (batch, pace) = match StoreKind::of(&state.config.store) {
        Some(StoreKind::Sqlite | StoreKind::Postgres | StoreKind::MySql) => {
            (SWEEP_BATCH, tessera_sql::DEFAULT_PACE)
        }
        _ => (1000, 0),
    };
    let store = state.manager.store();
    let total =
        tessera_sql::sweep_paced(store.as_ref(), state.manager.now(), batch, u32::MAX, pace)
            .await
            .map_err(tessera::SessionError::from)?;
    println!("purged {total} expired session(s)");
    Ok(())
}

/// `tessera user …`.
///
/// # Errors
///
/// User and store errors.
pub async fn user(config: Config, command: UserCommand) -> Result<(), ServerError> {
    // Revocations publish to the instances that cache (src/cache.rs).
    let state = build_state(crate::cache::for_cli(config), None).await?;
    match command {
        UserCommand::Add { name, .. } => {
            let password = read_password()?;
            state.users.add(&name, &password).await?;
            println!("created user {name}");
        }
        UserCommand::Passwd { name, .. } => {
            let password = read_password()?;
            state.users.set_password(&name, &password).await?;
            // After the change committed: any sign-in that read the old
            // hash took its time before this reading (see
            // `tessera::not_before`). A store error fails the command.
            let at = state.manager.now();
            let n = state
                .manager
                .revoke_user_before(&name, at, None, Revocation::PasswordChanged)
                .await?;
            state
                .activity
                .admin_signed_out(&name, state.manager.now().as_millis(), n)
                .await;
            println!("changed the password of {name}; revoked {n} session(s)");
        }
        UserCommand::Disable { name } => {
            state.users.disable(&name).await?;
            let at = state.manager.now();
            let n = state
                .manager
                .revoke_user_before(&name, at, None, Revocation::Disabled)
                .await?;
            state
                .activity
                .admin_signed_out(&name, state.manager.now().as_millis(), n)
                .await;
            println!("disabled {name}; revoked {n} session(s)");
        }
        UserCommand::List => {
            for u in state.users.list().await? {
                println!(
                    "{}\t{}",
                    u.username,
                    if u.disabled { "disabled" } else { "active" }
                );
            }
        }
    }
    Ok(())
}

/// `tessera sessions …`.
///
/// # Errors
///
/// Store errors.
pub async fn sessions(config: Config, command: SessionsCommand) -> Result<(), ServerError> {
    // Revocations publish to the instances that cache (src/cache.rs).
    let state = build_state(crate::cache::for_cli(config), None).await?;
    match command {
        SessionsCommand::List { user, json } => {
            let records = state.manager.list_user(&user).await?;
            let list: Vec<SessionSummary> = records
                .iter()
                .map(|r| SessionSummary::new(r, false))
                .collect();
            if json {
                let text = serde_json::to_string_pretty(&list)
                    .map_err(|e| ServerError::Message(e.to_string()))?;
                println!("{text}");
            } else {
                println!("HANDLE\tCREATED\tLAST SEEN\tIP\tUSER AGENT");
                for s in list {
                    println!(
                        "{}\t{}\t{}\t{}\t{}",
                        s.handle,
                        s.created_at,
                        s.last_seen_at,
                        s.ip.unwrap_or_default(),
                        s.user_agent.unwrap_or_default()
                    );
                }
            }
        }
        SessionsCommand::Revoke { everyone: true, .. } => {
            // ASVS 5.0 V7.4.5: every session of every user, on the shared
            // store, so every instance refuses them on the next request.
            let in_force = state.manager.revoke_everyone().await?;
            println!(
                "revoked every session created before {}",
                in_force.at.to_rfc3339()
            );
        }
        SessionsCommand::Revoke { user, handle, .. } => match (user, handle) {
            (Some(user), _) => {
                let n = state
                    .manager
                    .revoke_user(&user, None, Revocation::Admin)
                    .await?;
                state
                    .activity
                    .admin_signed_out(&user, state.manager.now().as_millis(), n)
                    .await;
                println!("revoked {n} session(s) of {user}");
            }
            (None, Some(handle)) => {
                let parsed = SessionHandle::parse(&handle).ok_or_else(|| {
                    ServerError::Message(format!("{handle:?} is not a session handle (tsh_…)"))
                })?;
                let owner = crate::activity::owner_of(&state.manager, &parsed).await;
                if state
                    .manager
                    .revoke(&parsed, None, Revocation::Admin)
                    .await?
                {
                    if let Some(user) = owner {
                        state
                            .activity
                            .admin_signed_out(&user, state.manager.now().as_millis(), 1)
                            .await;
                    }
                    println!("revoked session {handle}");
                } else {
                    return Err(ServerError::Message(format!("no session {handle}")));
                }
            }
            (None, None) => {
                return Err(ServerError::Message(String::from(
                    "give --user NAME, --handle H or --everyone",
                )));
            }
        },
    }
    Ok(())
}

/// `tessera api-key …`.
///
/// # Errors
///
/// Database errors.
pub async fn api_key(config: Config, command: ApiKeyCommand) -> Result<(), ServerError> {
    match command {
        ApiKeyCommand::Create { name } => {
            // A new key is remembered nowhere: the database is enough.
            let pool = crate::db::open(&config.database_url(), 1, config.store_timeout).await?;
            let key = crate::api_keys::ApiKeys::new(pool).create(&name).await?;
            eprintln!("created API key {name:?}; it is shown only once:");
            println!("{}", key.expose());
        }
        ApiKeyCommand::Revoke { name } => {
            let pool = crate::db::open(&config.database_url(), 1, config.store_timeout).await?;
            let mut keys = crate::api_keys::ApiKeys::new(pool);
            // Instances that cache remember keys: the revocation is
            // published on the store's channel (src/api_keys.rs). An
            // unreachable store must not stop the revocation itself: the
            // key is deleted either way, and the operator told that the
            // instances then refuse it within `cache_max_staleness`.
            let cli = crate::cache::for_cli(config);
            let mut unannounced = None;
            if cli.cache.is_on() {
                match crate::store::open_session_store(&cli).await {
                    Ok(store) => {
                        if let Some(cache) = store.cache() {
                            keys = keys.remembering(cache.clone(), cli.cache_max_staleness);
                        }
                    }
                    Err(e) => unannounced = Some(e.to_string()),
                }
            }
            match keys.revoke(&name).await? {
                crate::api_keys::Revoked::Missing => {
                    return Err(ServerError::Message(format!("no API key named {name:?}")));
                }
                crate::api_keys::Revoked::Revoked { announced } => {
                    if !announced && unannounced.is_none() {
                        unannounced = Some(String::from("publishing failed"));
                    }
                }
            }
            println!("revoked API key {name}");
            if let Some(error) = unannounced {
                eprintln!(
                    "warning: the running instances could not be told ({error}); \
                     those with cache = \"on\" refuse the key within cache_max_staleness"
                );
            }
        }
    }
    Ok(())
}
