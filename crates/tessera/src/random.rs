//! The one place tessera draws randomness: the operating system's CSPRNG.

use crate::error::RandomError;

/// Fills `buf` from the OS CSPRNG (`getrandom`). There is deliberately no
/// fallback: a session secret from a weak generator is worse than an error.
pub(crate) fn fill(buf: &mut [u8]) -> Result<(), RandomError> {
    getrandom::fill(buf).map_err(|_| RandomError)
}
