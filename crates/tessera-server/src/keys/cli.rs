//! `tessera keys …`: rotate, list and prune the signing keys where the
//! configuration keeps them (a directory or the shared store).

use tessera::time::{Clock as _, Timestamp};
use tessera_jwt::{Algorithm, KeySet, KeyStore, Kid};

use super::{Placement, configured_algorithm, key_error, process_kek, retention, shared_source};
use crate::cli::KeysCommand;
use crate::clock::ServerClock;
use crate::config::Config;
use crate::server_error::ServerError;

/// `tessera keys …`: rotate, list and prune the signing keys where `config`
/// keeps them (see the [module docs](super)). In the shared store each
/// change is a compare-and-set on the key set's version, so two rotations
/// at once on two machines both take effect one after the other, never one
/// over the other. Prints key ids, algorithms and dates, never key
/// material.
///
/// # Errors
///
/// [`ServerError`] naming what failed.
pub async fn command(config: &Config, command: KeysCommand) -> Result<(), ServerError> {
    let alg = configured_algorithm(config)?;
    let now = ServerClock::from_env().now();
    let retention = retention(config);
    let db = crate::db::open(
        &config.database_url(),
        config.store_pool_size,
        config.store_timeout,
    )
    .await?;
    let placement = Placement::of(config, db.backend());
    let (report, place) = match placement {
        Placement::Memory => {
            return Err(ServerError::Message(
                "the memory:// store keeps its signing keys in the server process; there are \
                 none to manage here (set keys_dir to keep them in a directory)"
                    .into(),
            ));
        }
        Placement::Dir => {
            let dir = config.keys_path();
            let mut store =
                KeyStore::open_or_create(&dir, alg, retention, now).map_err(key_error)?;
            let change = match command {
                KeysCommand::Rotate => Change::Rotated(store.rotate(alg, now).map_err(key_error)?),
                KeysCommand::Prune => Change::Pruned(store.prune(now).map_err(key_error)?),
                KeysCommand::List => Change::None,
            };
            (
                Report {
                    set: store.key_set().clone(),
                    change,
                },
                dir.display().to_string(),
            )
        }
        Placement::Database | Placement::Redis => {
            let shared = shared_source(config, placement, &db, process_kek(config)?).await?;
            let fail = |e: String| ServerError::Message(format!("signing keys: {e}"));
            shared
                .open_or_create(alg, retention, now)
                .await
                .map_err(fail)?;
            let (set, change) = match command {
                KeysCommand::List => {
                    let (_, set) = shared
                        .load(retention)
                        .await
                        .map_err(fail)?
                        .unwrap_or_else(|| (0, KeySet::new(retention)));
                    (set, Change::None)
                }
                KeysCommand::Rotate => {
                    let (_, set, kid) = shared
                        .update(retention, |set| {
                            set.rotate(alg, now).map_err(|e| e.to_string())
                        })
                        .await
                        .map_err(fail)?;
                    (set, Change::Rotated(kid))
                }
                KeysCommand::Prune => {
                    let (_, set, removed) = shared
                        .update(retention, |set| Ok(set.prune(now)))
                        .await
                        .map_err(fail)?;
                    (set, Change::Pruned(removed))
                }
            };
            (Report { set, change }, shared.repo.describe().to_owned())
        }
    };
    report.print(&place, alg, now, retention);
    Ok(())
}

/// What a command changed.
enum Change {
    None,
    Rotated(Kid),
    Pruned(Vec<Kid>),
}

/// The key set after a command, and what the command did to it.
struct Report {
    set: KeySet,
    change: Change,
}

impl Report {
    fn print(&self, place: &str, alg: Algorithm, now: Timestamp, retention: std::time::Duration) {
        match &self.change {
            Change::Rotated(kid) => {
                println!("new signing key {kid} ({alg}) in {place}");
                let previous = self
                    .set
                    .keys()
                    .filter(|k| k.retired_at == Some(now))
                    .map(|k| k.kid.clone())
                    .last();
                if let Some(old) = previous {
                    println!(
                        "key {old} stopped signing; it stays published until {} (when every token it signed has expired)",
                        (now + retention).to_rfc3339()
                    );
                }
                tracing::info!(target: tessera::audit::TARGET, event = "signing_key_rotated", kid = %kid, alg = %alg);
            }
            Change::Pruned(removed) => {
                for kid in removed {
                    println!("deleted key {kid}");
                }
                println!("pruned {} key(s)", removed.len());
            }
            Change::None => {
                println!("KID\tALGORITHM\tCREATED\tSTATE\tPUBLISHED UNTIL");
                for key in self.set.keys() {
                    let until = self.set.published_until(key);
                    let state = match until {
                        None => "active",
                        Some(end) if now < end => "retired",
                        Some(_) => "expired (prune)",
                    };
                    println!(
                        "{}\t{}\t{}\t{}\t{}",
                        key.kid,
                        key.algorithm,
                        key.created_at.to_rfc3339(),
                        state,
                        until.map_or_else(|| String::from("-"), Timestamp::to_rfc3339)
                    );
                }
            }
        }
    }
}
