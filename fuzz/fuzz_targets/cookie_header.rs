//! Cookie-header parsing: never panics; a token it returns was in the
//! header under the session cookie's name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera::cookie::{CookieConfig, Presented};

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    let config = CookieConfig::default();
    // Also as several header lines.
    let parts: Vec<&str> = header.split('\n').collect();
    for presented in [config.find_token([header]), config.find_token(parts)] {
        if let Presented::Token(token) = presented {
            assert!(header.contains(token.expose()));
            assert!(header.contains(config.name()));
        }
    }
});
