//! Decoding a stored record (Redis keeps records as JSON): never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera::record::SessionRecord;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = serde_json::from_slice::<SessionRecord>(data) {
        let again = serde_json::to_vec(&record).unwrap_or_default();
        let back: Option<SessionRecord> = serde_json::from_slice(&again).ok();
        assert_eq!(back.as_ref(), Some(&record));
    }
});
