//! Token parsing: never panics; whatever parses re-encodes to the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera::token::{RefreshToken, SessionToken};

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(token) = SessionToken::parse(input) {
        assert_eq!(token.expose(), input);
        assert_eq!(SessionToken::parse(token.expose()).ok(), Some(token));
    }
    if let Ok(token) = RefreshToken::parse(input) {
        assert_eq!(token.expose(), input);
    }
    let _ = tessera::record::SessionHandle::parse(input);
    let _ = tessera::token::TokenHash::from_hex(input);
});
