//! Parses and prints durations like `90s`, `30m`, `12h` (serde helper).

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Parses `90s`, `30m`, `12h`, `1h 30m`, `250ms`. A bare number is
/// refused: a unit is always required, so `30` cannot be misread as
/// minutes when seconds were meant.
///
/// # Errors
///
/// A message naming the bad value.
///
/// ```
/// use std::time::Duration;
/// use tessera_server::config::duration::parse;
/// assert_eq!(parse("90s"), Ok(Duration::from_secs(90)));
/// assert_eq!(parse("12h"), Ok(Duration::from_secs(12 * 3600)));
/// assert!(parse("30").is_err());
/// ```
pub fn parse(input: &str) -> Result<Duration, String> {
    let trimmed = input.trim();
    humantime::parse_duration(trimmed)
        .map_err(|e| format!("invalid duration {input:?} ({e}); write it like 90s, 30m or 12h"))
}

/// Formats a duration the way [`parse`] reads it.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(tessera_server::config::duration::format(Duration::from_secs(5400)), "1h 30m");
/// ```
pub fn format(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// serde `serialize_with`.
///
/// # Errors
///
/// Those of the serializer.
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*d))
}

/// serde `deserialize_with`.
///
/// # Errors
///
/// A message naming the bad value.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    // Environment variables like `TESSERA_IDLE_TIMEOUT=30` arrive as
    // numbers; name the missing unit instead of a type mismatch.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Number(i64),
        Float(f64),
    }
    match Raw::deserialize(d)? {
        Raw::Text(s) => parse(&s).map_err(serde::de::Error::custom),
        Raw::Number(n) => Err(serde::de::Error::custom(format!(
            "invalid duration {n} (a unit is required); write it like 90s, 30m or 12h"
        ))),
        Raw::Float(n) => Err(serde::de::Error::custom(format!(
            "invalid duration {n} (a unit is required); write it like 90s, 30m or 12h"
        ))),
    }
}
