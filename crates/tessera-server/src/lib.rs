#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
// Library and server code never panics on input or store errors: no
// unwrap()/expect() outside tests (the conformance kit allows them).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod activity;
pub mod admission;
pub mod api;
pub mod api_keys;
pub mod audit;
pub mod cache;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod db;
pub mod dbsc;
pub mod error;
pub mod extract;
pub mod files;
pub mod forward_auth;
pub mod keys;
pub mod lifetime;
pub mod listen;
pub mod metrics;
pub mod openapi;
pub mod ops;
pub mod password_check;
pub mod proxy;
pub mod ratelimit;
pub mod render;
pub mod server;
pub mod server_error;
pub mod site;
pub mod state;
pub mod store;
pub mod store_url;
pub mod tokens;
pub mod users;

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::cli::{Cli, Command};
use crate::config::{Config, Overrides};
use crate::server_error::ServerError;

/// Installs the JSON log on standard error (filtered by `log_filter`, or
/// `RUST_LOG` when set) and the audit-event metrics layer (which sees every
/// audit event whatever the log filter, so counters are exact).
///
/// The metrics layer gets a filter of its own that lets only the audit
/// target through. Unfiltered, it made the whole subscriber claim interest
/// in every event at every level: each `debug!`/`trace!` in tessera and its
/// dependencies (and every `log` record, through the bridge) was built and
/// dispatched only to be dropped, about 2% of `tessera serve`'s time on
/// the `/v1` write path.
pub fn init_tracing(filter: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(false)
        .with_writer(std::io::stderr)
        .with_filter(filter);
    // A second initialisation (tests) is harmless: keep the first.
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(
            crate::metrics::AuditMetrics.with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target(tessera::audit::TARGET, tracing::Level::INFO),
            ),
        )
        .try_init();
}

/// Runs a parsed command line.
///
/// # Errors
///
/// [`ServerError`] describing what failed.
pub async fn run(cli: Cli) -> Result<(), ServerError> {
    let overrides = Overrides {
        listen: match &cli.command {
            Command::Serve(args) => args.listen,
            _ => None,
        },
        store: cli.store.clone(),
        database: cli.database.clone(),
        insecure_http: match &cli.command {
            Command::Serve(args) if args.insecure_http => Some(true),
            _ => None,
        },
    };
    let config = Config::load(cli.config.as_deref(), &overrides)?;
    init_tracing(&config.log_filter);
    // A misspelt variable leaves a default in force: say so.
    let names = std::env::vars_os().filter_map(|(name, _)| name.into_string().ok());
    for unknown in crate::config::unknown_env_vars(names) {
        match &unknown.did_you_mean {
            Some(known) => tracing::warn!(
                variable = %unknown.name,
                did_you_mean = %known,
                "unknown TESSERA_ environment variable ignored; did you mean {known}?"
            ),
            None => tracing::warn!(
                variable = %unknown.name,
                "unknown TESSERA_ environment variable ignored (see the configuration table \
                 in the server README)"
            ),
        }
    }
    match cli.command {
        Command::Serve(_) => {
            let handle = crate::metrics::install().map_err(ServerError::Message)?;
            crate::metrics::describe();
            server::serve(config, Some(handle)).await
        }
        Command::Migrate => commands::migrate(config).await,
        Command::Sweep => commands::sweep(config).await,
        Command::User(c) => commands::user(config, c).await,
        Command::Sessions(c) => commands::sessions(config, c).await,
        Command::ApiKey(c) => commands::api_key(config, c).await,
        Command::Keys(c) => keys::cli::command(&config, c).await,
    }
}
