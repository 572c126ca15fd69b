//! The one place tessera draws randomness: the operating system's CSPRNG.

/// The operating system's CSPRNG failed. tessera never falls back to a
/// weaker source.
///
/// Public as `tessera::error::RandomError`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the operating system's random number generator failed")]
pub struct RandomError;

/// Fills `buf` from the OS CSPRNG (`getrandom`). There is deliberately no
/// fallback: a session secret from a weak generator is worse than an error.
pub(crate) fn fill(buf: &mut [u8]) -> Result<(), RandomError> {
    getrandom::fill(buf).map_err(|_| RandomError)
}
