//! The DBSC settings: the mode, and the lifetimes, names and paths of the
//! bound cookie and its endpoints.

use std::time::Duration;

/// How DBSC is used. Serialized as `off`, `additive` or `required`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DbscMode {
    /// No registration header, no endpoints.
    #[default]
    Off,
    /// Sessions are offered binding; a bound session without its bound
    /// cookie is served as unbound and logged (observe before enforcing).
    Additive,
    /// A bound session without a valid bound cookie is not authenticated.
    Required,
}

impl DbscMode {
    /// Parses `off`, `additive` or `required`.
    ///
    /// ```
    /// use tessera::dbsc::DbscMode;
    /// assert_eq!(DbscMode::parse("required"), Some(DbscMode::Required));
    /// assert_eq!(DbscMode::parse("on"), None);
    /// ```
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "off" => Some(Self::Off),
            "additive" => Some(Self::Additive),
            "required" => Some(Self::Required),
            _ => None,
        }
    }

    /// The configuration spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Additive => "additive",
            Self::Required => "required",
        }
    }
}

/// DBSC settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbscConfig {
    /// Off, additive or required.
    pub mode: DbscMode,
    /// Lifetime of a bound cookie (default 10 minutes): how long a stolen
    /// copy keeps working.
    pub cookie_lifetime: Duration,
    /// How long a challenge stays answerable (default 5 minutes).
    pub challenge_lifetime: Duration,
    /// Name of the bound cookie.
    pub cookie_name: String,
    /// `Secure` on the bound cookie (off only in plain-HTTP development).
    pub secure: bool,
    /// Path the browser POSTs the registration proof to.
    pub registration_path: String,
    /// Path the browser POSTs refreshes to.
    pub refresh_path: String,
}

impl Default for DbscConfig {
    fn default() -> Self {
        Self {
            mode: DbscMode::Off,
            cookie_lifetime: Duration::from_secs(600),
            challenge_lifetime: Duration::from_secs(300),
            cookie_name: "__Host-tessera-dbsc".to_owned(),
            secure: true,
            registration_path: "/dbsc/register".to_owned(),
            refresh_path: "/dbsc/refresh".to_owned(),
        }
    }
}

impl DbscConfig {
    /// The cookie attributes, exactly as in `Set-Cookie` and in the session
    /// config's `credentials[].attributes`. Chromium compares the two, and
    /// an absent `SameSite` is not `Lax` to it, so both come from here.
    /// `__Host-` rules (RFC 6265bis §4.1.3.2): Path=/, no Domain, Secure.
    ///
    /// ```
    /// let c = tessera::dbsc::DbscConfig::default();
    /// assert_eq!(c.cookie_attributes(), "Path=/; Secure; HttpOnly; SameSite=Strict");
    /// ```
    pub fn cookie_attributes(&self) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!("Path=/{secure}; HttpOnly; SameSite=Strict")
    }
}
