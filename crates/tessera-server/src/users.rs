//! User accounts: names, Argon2id password hashes, a disabled flag.
//!
//! Passwords are hashed with Argon2id at the OWASP Password Storage Cheat
//! Sheet's first recommended setting (m = 19 MiB, t = 2, p = 1), which also
//! satisfies ASVS 5.0 V11.4.2. Hashing runs on the admission's own threads
//! (see [`crate::admission`]) so a burst of sign-ins cannot stall the
//! request threads.
//!
//! A sign-in for an unknown (or disabled) user runs exactly the same Argon2
//! verification, against a dummy hash made at start-up with the same
//! parameters, and returns the same answer as a wrong password: neither the
//! message nor the time tells whether a user exists (OWASP Authentication
//! Cheat Sheet, "Authentication and Error Messages").
//!
//! Every hash and verification first takes a slot of the
//! [`HashAdmission`] gate, so a flood of sign-ins costs at most its width
//! times the Argon2 memory; past the gate's line the answer is
//! [`UserError::Busy`] at once. A sign-in for an unknown user takes its slot
//! the same way, before the database lookup.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use serde::Serialize;

use crate::admission::{Busy, HashAdmission};
use crate::db::{Db, is_duplicate, now_secs, on_pool};

/// Argon2 memory cost in KiB (OWASP: 19 MiB).
pub const ARGON2_M_KIB: u32 = 19_456;
/// Argon2 iterations (OWASP: 2).
pub const ARGON2_T: u32 = 2;
/// Argon2 parallelism (OWASP: 1).
pub const ARGON2_P: u32 = 1;
/// Shortest accepted password (ASVS 5.0 V6.2.1: at least 8).
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest accepted password in bytes (ASVS 5.0 V6.2.9 asks that at least 64
/// characters be allowed; the cap bounds hashing work).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Why a user operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UserError {
    /// The user name is not acceptable.
    #[error("invalid user name: use 1-64 characters from letters, digits, '.', '_', '-', '@'")]
    InvalidName,
    /// The password is too short or too long.
    #[error("password must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_BYTES} bytes long")]
    WeakPassword,
    /// A user with that name exists.
    #[error("user already exists")]
    Exists,
    /// No such user.
    #[error("no such user")]
    NotFound,
    /// The database failed.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// Hashing failed (or the OS CSPRNG did).
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// Every password-hashing slot is taken and the line is full; the
    /// caller answers 503 with `Retry-After`.
    #[error(transparent)]
    Busy(#[from] Busy),
}

/// A user as listed (never with the hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserInfo {
    /// The user name (also the session `user_id`).
    pub username: String,
    /// Whether sign-in is refused.
    pub disabled: bool,
    /// Creation time, seconds since the epoch.
    pub created_at: i64,
}

/// The user table.
#[derive(Clone)]
pub struct Users {
    db: Db,
    dummy_hash: Arc<str>,
    admission: HashAdmission,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users").finish_non_exhaustive()
    }
}

/// Validates a user name.
///
/// ```
/// use tessera_server::users::valid_username;
/// assert!(valid_username("alice@example.com"));
/// assert!(!valid_username(""));
/// assert!(!valid_username("a b"));
/// ```
pub fn valid_username(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
}

fn check_password(password: &str) -> Result<(), UserError> {
    if password.chars().count() < MIN_PASSWORD_CHARS || password.len() > MAX_PASSWORD_BYTES {
        return Err(UserError::WeakPassword);
    }
    Ok(())
}

fn argon2() -> Result<Argon2<'static>, UserError> {
    let params = Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, None)
        .map_err(|e| UserError::Hash(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes a password (blocking; call from the blocking pool).
fn hash_blocking(password: &str) -> Result<String, UserError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| UserError::Hash(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| UserError::Hash(e.to_string()))?;
    argon2()?
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| UserError::Hash(e.to_string()))
}

/// Verifies a password against a PHC string (blocking).
fn verify_blocking(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    // The parameters come from the stored hash; argon2() only supplies the
    // algorithm family.
    argon2()
        .map(|a| a.verify_password(password.as_bytes(), &parsed).is_ok())
        .unwrap_or(false)
}

async fn hash(admission: &HashAdmission, password: String) -> Result<String, UserError> {
    let permit = admission.admit().await?;
    // The slot is held until the hash is done, even if the request that
    // asked for it is gone.
    admission
        .run(permit, move || hash_blocking(&password))
        .await?
}

/// A random password for the demo user: 20 characters from a 56-symbol
/// alphabet without look-alikes (~116 bits).
///
/// # Errors
///
/// [`UserError::Hash`] if the OS CSPRNG fails.
pub fn random_password() -> Result<String, UserError> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut out = String::with_capacity(20);
    while out.len() < 20 {
        let mut b = [0u8; 1];
        getrandom::fill(&mut b).map_err(|e| UserError::Hash(e.to_string()))?;
        let [v] = b;
        // Rejection sampling keeps the choice uniform.
        let limit = 256 - 256 % ALPHABET.len();
        if usize::from(v) < limit
            && let Some(c) = ALPHABET.get(usize::from(v) % ALPHABET.len())
        {
            out.push(char::from(*c));
        }
    }
    Ok(out)
}

impl Users {
    /// Opens the user table of the server database (any backend: a
    /// [`Db`] or a SQLite pool) and prepares the dummy hash used for
    /// unknown users.
    ///
    /// # Errors
    ///
    /// [`UserError::Hash`] if hashing fails.
    pub async fn new(db: impl Into<Db>) -> Result<Self, UserError> {
        Self::with_admission(db, HashAdmission::default()).await
    }

    /// Like [`Users::new`], with every hash and verification admitted by
    /// `admission`.
    ///
    /// # Errors
    ///
    /// [`UserError::Hash`] if hashing fails.
    pub async fn with_admission(
        db: impl Into<Db>,
        admission: HashAdmission,
    ) -> Result<Self, UserError> {
        let dummy = hash(&admission, random_password()?).await?;
        Ok(Self {
            db: db.into(),
            dummy_hash: Arc::from(dummy),
            admission,
        })
    }

    /// The gate in front of this table's password hashing.
    pub fn admission(&self) -> &HashAdmission {
        &self.admission
    }

    /// Number of users.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn count(&self) -> Result<i64, UserError> {
        let sql = "SELECT COUNT(*) FROM tessera_users";
        Ok(on_pool!(&self.db, pool => sqlx::query_scalar(sql).fetch_one(pool).await?))
    }

    /// Creates a user.
    ///
    /// # Errors
    ///
    /// [`UserError::InvalidName`], [`UserError::WeakPassword`],
    /// [`UserError::Exists`], database and hashing errors.
    pub async fn add(&self, name: &str, password: &str) -> Result<(), UserError> {
        if !valid_username(name) {
            return Err(UserError::InvalidName);
        }
        check_password(password)?;
        let phc = hash(&self.admission, password.to_owned()).await?;
        let now = now_secs();
        let sql = self.db.dialect(
            "INSERT INTO tessera_users (username, password_hash, disabled, created_at, password_changed_at)
             VALUES (?, ?, 0, ?, ?)",
        );
        let result = on_pool!(&self.db, pool => sqlx::query(&sql)
            .bind(name)
            .bind(&phc)
            .bind(now)
            .bind(now)
            .execute(pool)
            .await
            .map(drop));
        match result {
            // The primary key decides, atomically, on every backend.
            Err(e) if is_duplicate(&e) => Err(UserError::Exists),
            other => Ok(other?),
        }
    }

    /// Sets a new password. The caller revokes the user's sessions.
    ///
    /// # Errors
    ///
    /// [`UserError::NotFound`], [`UserError::WeakPassword`], database and
    /// hashing errors.
    pub async fn set_password(&self, name: &str, password: &str) -> Result<(), UserError> {
        check_password(password)?;
        let phc = hash(&self.admission, password.to_owned()).await?;
        let sql = self.db.dialect(
            "UPDATE tessera_users SET password_hash = ?, password_changed_at = ? WHERE username = ?",
        );
        let affected = on_pool!(&self.db, pool => sqlx::query(&sql)
            .bind(&phc)
            .bind(now_secs())
            .bind(name)
            .execute(pool)
            .await?
            .rows_affected());
        if affected == 0 {
            return Err(UserError::NotFound);
        }
        Ok(())
    }

    /// Disables a user. The caller revokes the user's sessions.
    ///
    /// # Errors
    ///
    /// [`UserError::NotFound`], database errors.
    pub async fn disable(&self, name: &str) -> Result<(), UserError> {
        // `disabled = 1` whether or not it was already: MySQL counts only
        // changed rows, so "no such user" is asked separately.
        let sql = self
            .db
            .dialect("UPDATE tessera_users SET disabled = 1 WHERE username = ?");
        on_pool!(&self.db, pool => sqlx::query(&sql).bind(name).execute(pool).await.map(drop))?;
        if !self.exists(name).await? {
            return Err(UserError::NotFound);
        }
        Ok(())
    }

    /// Whether the user exists and may sign in (for checks on each request).
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn is_active(&self, name: &str) -> Result<bool, UserError> {
        Ok(self.disabled_flag(name).await? == Some(0))
    }

    /// All users, by name.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn list(&self) -> Result<Vec<UserInfo>, UserError> {
        let sql = format!(
            "SELECT {}, disabled, created_at FROM tessera_users ORDER BY username",
            self.db.text("username")
        );
        let rows: Vec<(String, i64, i64)> =
            on_pool!(&self.db, pool => sqlx::query_as(&sql).fetch_all(pool).await?);
        Ok(rows
            .into_iter()
            .map(|(username, disabled, created_at)| UserInfo {
                username,
                disabled: disabled != 0,
                created_at,
            })
            .collect())
    }

    /// Checks a sign-in. True only for an existing, enabled user with this
    /// password. Always performs exactly one Argon2 verification, so unknown
    /// and disabled users cost the same as a wrong password.
    ///
    /// # Errors
    ///
    /// [`UserError::Busy`] when the hashing gate is full; database and task
    /// errors (the caller answers 503, not 401).
    pub async fn verify(&self, name: &str, password: &str) -> Result<bool, UserError> {
        // The slot is taken before the lookup, so known and unknown users
        // meet the gate the same way.
        let permit = self.admission.admit().await.inspect_err(|_| {
            metrics::counter!(crate::metrics::PASSWORD_ADMISSION_REFUSED).increment(1);
        })?;
        let row: Option<(String, i64)> = if valid_username(name) {
            let sql = self
                .db
                .dialect("SELECT password_hash, disabled FROM tessera_users WHERE username = ?");
            on_pool!(&self.db, pool => sqlx::query_as(&sql)
                .bind(name)
                .fetch_optional(pool)
                .await?)
        } else {
            None
        };
        let (phc, usable) = match row {
            Some((phc, disabled)) => (phc, disabled == 0),
            None => (self.dummy_hash.to_string(), false),
        };
        // Oversized input is compared against nothing but still costs one
        // verification of a bounded prefix, so its timing says nothing either.
        let too_long = password.len() > MAX_PASSWORD_BYTES;
        let candidate: String = if too_long {
            password.chars().take(MAX_PASSWORD_BYTES / 4).collect()
        } else {
            password.to_owned()
        };
        let matched = self
            .admission
            .run(permit, move || {
                metrics::counter!(crate::metrics::PASSWORD_VERIFICATIONS).increment(1);
                verify_blocking(&candidate, &phc)
            })
            .await?;
        Ok(matched && usable && !too_long)
    }

    /// The `disabled` column of `name`, or `None` without such a user.
    async fn disabled_flag(&self, name: &str) -> Result<Option<i64>, UserError> {
        let sql = self
            .db
            .dialect("SELECT disabled FROM tessera_users WHERE username = ?");
        Ok(on_pool!(&self.db, pool => sqlx::query_scalar(&sql)
            .bind(name)
            .fetch_optional(pool)
            .await?))
    }

    async fn exists(&self, name: &str) -> Result<bool, UserError> {
        Ok(self.disabled_flag(name).await?.is_some())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn users() -> (tempfile::TempDir, Users) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("u.db").display());
        let pool = crate::db::open(&url, 2, Duration::from_secs(5))
            .await
            .unwrap();
        (dir, Users::new(pool).await.unwrap())
    }

    #[test]
    fn hashes_use_owasp_argon2id_parameters() {
        let phc = hash_blocking("correct horse battery").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_blocking("correct horse battery", &phc));
        assert!(!verify_blocking("wrong horse battery", &phc));
        assert!(!verify_blocking("x", "not a phc string"));
    }

    #[test]
    fn random_passwords_are_long_and_differ() {
        let a = random_password().unwrap();
        let b = random_password().unwrap();
        assert_eq!(a.len(), 20);
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn sign_in_rules() {
        let (_dir, users) = users().await;
        users.add("alice", "password-one").await.unwrap();
        assert!(matches!(
            users.add("alice", "password-two").await,
            Err(UserError::Exists)
        ));
        assert!(matches!(
            users.add("bad name", "password-two").await,
            Err(UserError::InvalidName)
        ));
        assert!(matches!(
            users.add("bob", "short").await,
            Err(UserError::WeakPassword)
        ));

        assert!(users.verify("alice", "password-one").await.unwrap());
        assert!(!users.verify("alice", "password-two").await.unwrap());
        assert!(!users.verify("nobody", "password-one").await.unwrap());
        assert!(!users.verify("", "").await.unwrap());
        assert!(!users.verify("alice", &"p".repeat(5000)).await.unwrap());

        users.set_password("alice", "password-new").await.unwrap();
        assert!(!users.verify("alice", "password-one").await.unwrap());
        assert!(users.verify("alice", "password-new").await.unwrap());

        users.disable("alice").await.unwrap();
        assert!(!users.verify("alice", "password-new").await.unwrap());
        assert!(!users.is_active("alice").await.unwrap());
        assert!(matches!(
            users.disable("nobody").await,
            Err(UserError::NotFound)
        ));
    }
}
