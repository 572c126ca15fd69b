//! Hostile HTTP against the real `tessera serve`: oversized and malformed
//! requests, cookie stuffing, duplicate `__Host-` cookies, CR/LF injection,
//! slow clients and a burst of forged tokens. The rules proven here
//! ("junk, oversized or forged cookies and tokens → 401, never 500";
//! docs/design.md, invariant 9) come from docs/security.md and the OWASP Session Management Cheat Sheet (session ID
//! validation before any lookup; treat duplicates as hostile).
//!
//! Raw TCP is used wherever an HTTP client library would refuse to send
//! the request (CR/LF, non-UTF-8 bytes, oversized headers) or would hide
//! what the server does with the connection.

mod burst;
mod client;
mod raw;
mod requests;
mod slow;
