//! Short-lived signed access tokens for tessera sessions.
#![forbid(unsafe_code)]
