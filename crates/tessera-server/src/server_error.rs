//! [`ServerError`]: why the server could not start or a command failed.
//! Below the modules that return it (start-up, signing keys, commands), so
//! none of them depends on the server's top module.

/// Why the server could not start or a command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The server database failed.
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    /// The session store could not be opened.
    #[error(transparent)]
    Store(#[from] crate::store::StoreOpenError),
    /// A session operation failed.
    #[error(transparent)]
    Session(#[from] tessera::SessionError),
    /// A user operation failed.
    #[error(transparent)]
    User(#[from] crate::users::UserError),
    /// An API-key operation failed.
    #[error(transparent)]
    ApiKey(#[from] crate::api_keys::ApiKeyError),
    /// The policy is invalid.
    #[error(transparent)]
    Policy(#[from] tessera::policy::PolicyError),
    /// Listening or terminal I/O failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Anything a command reports to its user.
    #[error("{0}")]
    Message(String),
}
