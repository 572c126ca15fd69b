//! Real-browser tests: Debian's Chromium, driven through chromedriver, against
//! the real `tessera serve` on loopback. They prove what only a browser
//! enforces: cookie attributes, SameSite, Fetch Metadata, the back button
//! and the page's expiry script.
//!
//! Needs the Debian packages `chromium` and `chromium-driver`
//! (`scripts/test.sh` installs them); the tests fail, naming them, when
//! they are missing.

mod attacker;
mod harness;
mod site;
mod ux;
