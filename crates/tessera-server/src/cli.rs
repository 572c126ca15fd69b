//! The command line (`tessera --help`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Secure sessions for any web stack: a sign-in site, a JSON API for
/// backends, forward auth for reverse proxies, and the admin commands to run
/// them. With no configuration it keeps everything in `./tessera.db`.
///
/// Settings come from (lowest to highest): built-in defaults, the file given
/// with --config, TESSERA_* environment variables, then flags.
#[derive(Debug, Parser)]
#[command(name = "tessera", version, propagate_version = true)]
pub struct Cli {
    /// TOML configuration file (keys as in the README's configuration table).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Session store URL: sqlite://PATH, postgres://…, mysql://…,
    /// redis://…, redis-cluster://host:port,… [env: TESSERA_STORE].
    #[arg(long, global = true, value_name = "URL")]
    pub store: Option<String>,

    /// Users and API keys database: sqlite://PATH, postgres://… or mysql://…
    /// (default: the store's own database if it is SQLite, PostgreSQL or
    /// MySQL, else sqlite://tessera.db) [env: TESSERA_DATABASE].
    #[arg(long, global = true, value_name = "URL")]
    pub database: Option<String>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: sign-in site, /v1 API, forward auth, metrics.
    ///
    /// On a first start with no users it creates the user `demo` with a
    /// random password and prints it once, with the URL to open.
    Serve(ServeArgs),
    /// Create or upgrade the database tables, then exit.
    Migrate,
    /// Delete expired sessions now, then exit (the server also sweeps
    /// periodically).
    Sweep,
    /// Manage user accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// List and revoke sessions.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Manage API keys for the /v1 API.
    #[command(subcommand, name = "api-key")]
    ApiKey(ApiKeyCommand),
    /// Manage the access-token signing keys (directory: keys_dir).
    #[command(subcommand)]
    Keys(KeysCommand),
}

/// `tessera serve` options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on, e.g. 127.0.0.1:8080 (port 0 picks a free one)
    /// [env: TESSERA_LISTEN].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// Development over plain HTTP: the session cookie is sent without
    /// Secure. Prints a warning. Never use in production
    /// [env: TESSERA_INSECURE_HTTP].
    #[arg(long)]
    pub insecure_http: bool,
}

/// `tessera user …`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is read from standard input.
    Add {
        /// User name (1–64 characters: letters, digits, `.`, `_`, `-`, `@`).
        name: String,
        /// Read the password from standard input (the only way to give one,
        /// so it never appears in the process list or shell history).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Change a user's password (read from standard input) and revoke all of
    /// the user's sessions.
    Passwd {
        /// User name.
        name: String,
        /// Read the new password from standard input.
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Disable a user: revoke all of the user's sessions and refuse sign-in.
    Disable {
        /// User name.
        name: String,
    },
    /// List users.
    List,
}

/// `tessera sessions …`.
#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// List a user's live sessions.
    List {
        /// User name.
        #[arg(long, value_name = "NAME")]
        user: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke all sessions of a user, one session by handle, or every
    /// session of every user.
    Revoke {
        /// Revoke every session of this user.
        #[arg(
            long,
            value_name = "NAME",
            conflicts_with_all = ["handle", "everyone"],
            required_unless_present_any = ["handle", "everyone"]
        )]
        user: Option<String>,
        /// Revoke the session with this public handle (tsh_…).
        #[arg(long, value_name = "HANDLE", conflicts_with = "everyone")]
        handle: Option<String>,
        /// Revoke every session of every user, and their refresh tokens:
        /// everybody must sign in again (ASVS 5.0 V7.4.5, e.g. after a
        /// breach).
        #[arg(long)]
        everyone: bool,
    },
}

/// `tessera api-key …`.
#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create an API key and print it once (only its hash is stored).
    Create {
        /// A name for the key (who uses it).
        name: String,
    },
    /// Revoke an API key by name.
    Revoke {
        /// The key's name.
        name: String,
    },
}

/// `tessera keys …`. Output names keys by id and algorithm; private keys
/// are never printed.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Add a new signing key; the previous one stops signing at once and
    /// stays published in the JWKS until every token it signed has expired.
    Rotate,
    /// List the keys: id, algorithm, created, state, published until.
    List,
    /// Delete retired keys whose tokens have all expired.
    Prune,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn passwords_are_never_arguments() {
        assert!(Cli::try_parse_from(["tessera", "user", "add", "bob"]).is_err());
        let cli =
            Cli::try_parse_from(["tessera", "user", "add", "bob", "--password-stdin"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::User(UserCommand::Add { .. })
        ));
    }

    #[test]
    fn sessions_revoke_needs_exactly_one_target() {
        assert!(Cli::try_parse_from(["tessera", "sessions", "revoke"]).is_err());
        assert!(
            Cli::try_parse_from([
                "tessera", "sessions", "revoke", "--user", "a", "--handle", "b"
            ])
            .is_err()
        );
        assert!(Cli::try_parse_from(["tessera", "sessions", "revoke", "--user", "a"]).is_ok());
        assert!(Cli::try_parse_from(["tessera", "sessions", "revoke", "--everyone"]).is_ok());
        for other in [["--user", "a"], ["--handle", "b"]] {
            let mut args = vec!["tessera", "sessions", "revoke", "--everyone"];
            args.extend(other);
            assert!(Cli::try_parse_from(args).is_err(), "{other:?}");
        }
    }
}
