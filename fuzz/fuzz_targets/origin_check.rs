//! The Fetch-Metadata / Origin check: never panics, and never accepts a
//! `cross-site` request from an untrusted origin.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera::csrf::OriginCheck;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = s.splitn(3, '\n');
    let site = parts.next();
    let origin = parts.next();
    let host = parts.next();
    let check = OriginCheck::new(["https://trusted.example"]);
    let verdict = check.check(site, origin, host);
    if site.is_some_and(|v| v.trim().eq_ignore_ascii_case("cross-site"))
        && origin.is_none_or(|o| o.trim().trim_end_matches('/').to_ascii_lowercase() != "https://trusted.example")
    {
        assert!(verdict.is_err());
    }
});
