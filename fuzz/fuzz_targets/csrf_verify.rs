//! CSRF verification: never panics; a random input never verifies; a masked
//! token of the secret always does, and one byte changed never does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera::csrf::CsrfSecret;

fuzz_target!(|data: &[u8]| {
    let secret = CsrfSecret::from_bytes([7; 32]);
    if let Ok(s) = std::str::from_utf8(data) {
        // A 2^-256 chance of a false positive: treat any success as a bug.
        if secret.verify(s) {
            let mut raw = [0u8; 64];
            use base64::Engine as _;
            let n = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode_slice(s, &mut raw)
                .unwrap_or(0);
            assert_eq!(n, 64, "only a 64-byte masked token can verify");
        }
    }
    let Ok(token) = secret.masked_token() else {
        return;
    };
    assert!(secret.verify(&token));
    if let Some((&pos, &byte)) = data.first().zip(data.get(1)) {
        let mut bytes = token.into_bytes();
        let i = usize::from(pos) % bytes.len();
        if let Some(slot) = bytes.get_mut(i) {
            if *slot != byte && byte.is_ascii_alphanumeric() {
                *slot = byte;
                let changed = String::from_utf8_lossy(&bytes).into_owned();
                assert!(!secret.verify(&changed));
            }
        }
    }
});
