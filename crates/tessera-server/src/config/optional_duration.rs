//! [`duration`](super::duration) for an optional value (serde helper): absent is `None`.

use std::time::Duration;

use serde::{Deserializer, Serializer};

/// serde `serialize_with` (use with `skip_serializing_if =
/// "Option::is_none"`).
///
/// # Errors
///
/// Those of the serializer.
pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => super::duration::serialize(d, s),
        None => s.serialize_none(),
    }
}

/// serde `deserialize_with`.
///
/// # Errors
///
/// A message naming the bad value.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    super::duration::deserialize(d).map(Some)
}
