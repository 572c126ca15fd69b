//! Property tests for the parsers and the timeout rule.

use std::time::Duration;

use proptest::prelude::*;
use tessera::csrf::CsrfSecret;
use tessera::policy::SessionPolicy;
use tessera::time::Timestamp;
use tessera::token::SessionToken;

proptest! {
    #[test]
    fn tokens_round_trip_and_any_single_byte_change_is_refused(pos in 0usize..52, byte in any::<u8>()) {
        let token = SessionToken::generate().unwrap();
        prop_assert_eq!(SessionToken::parse(token.expose()).unwrap(), token.clone());
        let mut bytes = token.expose().as_bytes().to_vec();
        prop_assume!(bytes[pos] != byte);
        bytes[pos] = byte;
        let changed = String::from_utf8_lossy(&bytes).into_owned();
        prop_assert!(SessionToken::parse(&changed).is_err());
    }

    #[test]
    fn arbitrary_input_never_panics_the_parser(input in ".{0,200}") {
        let _ = SessionToken::parse(&input);
    }

    #[test]
    fn masked_csrf_tokens_verify_for_their_session_only(_n in 0u8..32) {
        let mine = CsrfSecret::generate().unwrap();
        let theirs = CsrfSecret::generate().unwrap();
        let token = mine.masked_token().unwrap();
        prop_assert!(mine.verify(&token));
        prop_assert!(!theirs.verify(&token));
    }

    /// For any sequence of clock steps, each followed by a request that may
    /// count as activity, a session is valid iff neither deadline has passed
    /// (deadlines tracked independently of the policy code).
    #[test]
    fn a_session_is_valid_iff_neither_deadline_has_passed(
        steps in proptest::collection::vec((0u64..1_200, any::<bool>()), 1..60)
    ) {
        let idle = Duration::from_secs(600);
        let absolute = Duration::from_secs(3_600);
        let step = Duration::from_secs(30);
        let policy = SessionPolicy::default()
            .with_idle_timeout(idle).with_absolute_timeout(absolute).with_touch_step(step);
        let start = Timestamp::from_millis(0);
        let mut deadlines = policy.deadlines_at(start);
        let mut last_activity_written = start;
        let mut now = start;
        let mut alive = true;
        for (secs, active) in steps {
            now = now + Duration::from_secs(secs);
            let model_valid = alive
                && now < start + absolute
                && now < last_activity_written + idle;
            let valid = deadlines.expired_at(now).is_none();
            prop_assert_eq!(valid, model_valid);
            if !valid { alive = false; continue; }
            if active && policy.needs_touch(&deadlines, now) {
                deadlines.idle = policy.idle_deadline_after_activity(now, deadlines.absolute);
                last_activity_written = now;
            }
        }
    }
}
