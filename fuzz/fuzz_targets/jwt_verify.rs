//! Access-token verification: never panics, and nothing the fuzzer can
//! build verifies without the private key (a success would be a forgery).
//!
//! The first byte picks how the rest is used, so the fuzzer reaches past
//! the base64 layer: raw bytes; three parts (header JSON, claims JSON,
//! signature) that are base64url-encoded and joined; or a genuine header
//! naming the real key with fuzzed claims and signature, which reaches the
//! signature check. A valid token, one byte changed by the input, is
//! checked too.
#![no_main]

use std::sync::{Arc, LazyLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use tessera::record::SessionHandle;
use tessera::time::{Clock, ManualClock, Timestamp};
use tessera_jwt::{Algorithm, Issuer, IssuerConfig, KeySet, Verifier, VerifierConfig};

struct Ctx {
    verifier: Verifier,
    header_b64: String,
    token: Vec<u8>,
}

static CTX: LazyLock<Ctx> = LazyLock::new(|| {
    let now = Timestamp::from_millis(1_700_000_000_000);
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(now));
    let keys = KeySet::generate(Algorithm::EdDSA, now).expect("keys");
    let issuer = Issuer::new(IssuerConfig::new("iss", "aud"), &keys, clock.clone()).expect("issuer");
    let token = issuer
        .issue("user", &SessionHandle::generate().expect("sid"))
        .expect("token")
        .into_string();
    let header_b64 = token.split('.').next().unwrap_or_default().to_owned();
    let verifier = Verifier::new(
        VerifierConfig::new("iss", "aud").algorithms([Algorithm::EdDSA, Algorithm::Es256]),
        keys.public_keys(),
        clock,
    );
    assert!(verifier.verify(&token).is_ok());
    Ctx {
        verifier,
        header_b64,
        token: token.into_bytes(),
    }
});

fn join(parts: [&[u8]; 3]) -> Vec<u8> {
    let [h, c, s] = parts;
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(h),
        URL_SAFE_NO_PAD.encode(c),
        URL_SAFE_NO_PAD.encode(s)
    )
    .into_bytes()
}

fuzz_target!(|data: &[u8]| {
    let ctx = &*CTX;
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut pieces = rest.splitn(3, |b| *b == 0);
    let a = pieces.next().unwrap_or_default();
    let b = pieces.next().unwrap_or_default();
    let c = pieces.next().unwrap_or_default();
    let input = match mode % 4 {
        0 => rest.to_vec(),
        1 => join([a, b, c]),
        2 => {
            let mut t = ctx.header_b64.clone().into_bytes();
            t.push(b'.');
            t.extend(URL_SAFE_NO_PAD.encode(a).into_bytes());
            t.push(b'.');
            t.extend(URL_SAFE_NO_PAD.encode(b).into_bytes());
            t
        }
        _ => {
            let mut t = ctx.token.clone();
            if let (Some(&pos), Some(&byte)) = (rest.first(), rest.get(1)) {
                let i = usize::from(pos) * 3 % t.len();
                if t[i] == byte {
                    return;
                }
                t[i] = byte;
            } else {
                return;
            }
            t
        }
    };
    assert!(
        ctx.verifier.verify(&input).is_err(),
        "forged token verified: {:?}",
        String::from_utf8_lossy(&input)
    );
});
