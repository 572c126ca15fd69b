//! A request's binding, as the engine classifies it and as applications
//! see it.

/// What applications see of a request's binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// A fresh bound cookie proved the device within the cookie lifetime.
    Bound,
    /// No device proof: never registered, or (additive mode) the bound
    /// cookie was missing.
    Unbound,
}

impl Tier {
    /// `bound` or `unbound`, as reported to backends.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Bound => "bound",
            Self::Unbound => "unbound",
        }
    }
}

/// A request's binding, from [`Dbsc::check`](super::Dbsc::check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoundState {
    /// The session is bound and the request carries a live bound cookie.
    Bound,
    /// The session was never bound.
    Unbound,
    /// The session is bound but the request has no live bound cookie.
    Stale,
}

impl BoundState {
    /// The tier an application sees.
    pub const fn tier(self) -> Tier {
        match self {
            Self::Bound => Tier::Bound,
            Self::Unbound | Self::Stale => Tier::Unbound,
        }
    }
}
