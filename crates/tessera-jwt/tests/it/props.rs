//! Property tests: a valid token survives no single-byte change, and no
//! input makes the verifier panic.

use proptest::prelude::*;
use tessera::record::SessionHandle;
use tessera_jwt::Algorithm;

use crate::common::*;

fn check_single_byte_changes(alg: Algorithm) {
    let f = Fixture::new(alg);
    let token = f
        .issuer()
        .issue("user-1", &SessionHandle::generate().unwrap())
        .unwrap()
        .into_string();
    let verifier = f.verifier();
    assert!(verifier.verify(&token).is_ok());
    let bytes = token.into_bytes();
    let len = bytes.len();
    proptest!(ProptestConfig::with_cases(2000), |(index in 0..len, replacement in any::<u8>())| {
        prop_assume!(bytes[index] != replacement);
        let mut changed = bytes.clone();
        changed[index] = replacement;
        prop_assert!(verifier.verify(&changed).is_err(), "byte {} -> {:#04x} accepted", index, replacement);
    });
    // And exhaustively for one replacement per position: the neighbour in
    // the base64url alphabet, the change most likely to slip through a lax
    // decoder (same 6-bit group, different trailing bits).
    for index in 0..len {
        let mut changed = bytes.clone();
        changed[index] = match changed[index] {
            b'.' => b'A',
            b'z' => b'0',
            b'9' => b'-',
            b'_' => b'A',
            b'Z' => b'a',
            b'-' => b'_',
            c => c + 1,
        };
        assert!(
            verifier.verify(&changed).is_err(),
            "byte {index} changed and accepted"
        );
    }
}

#[test]
fn any_single_byte_change_is_refused_eddsa() {
    check_single_byte_changes(Algorithm::EdDSA);
}

#[test]
fn any_single_byte_change_is_refused_es256() {
    check_single_byte_changes(Algorithm::Es256);
}

proptest! {
    #[test]
    fn arbitrary_input_is_refused_without_panic(input in proptest::collection::vec(any::<u8>(), 0..10_000)) {
        thread_local! {
            static FIXTURE: Fixture = Fixture::new(Algorithm::EdDSA);
        }
        FIXTURE.with(|f| {
            prop_assert!(f.verifier().verify(&input).is_err());
            Ok(())
        })?;
    }

    #[test]
    fn arbitrary_dotted_base64_is_refused_without_panic(
        a in "[A-Za-z0-9_-]{0,200}", b in "[A-Za-z0-9_-]{0,400}", c in "[A-Za-z0-9_-]{0,100}",
    ) {
        thread_local! {
            static FIXTURE: Fixture = Fixture::new(Algorithm::EdDSA);
        }
        FIXTURE.with(|f| {
            let input = format!("{a}.{b}.{c}");
            prop_assert!(f.verifier().verify(&input).is_err());
            Ok(())
        })?;
    }
}
