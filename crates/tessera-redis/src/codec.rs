//! The compact encoding of a session record, the value of its Redis key
//! (a plain string; the layout before it kept the same value in field `c`
//! of a hash).
//!
//! One value holds the whole record, once (an earlier layout kept the
//! checked fields *and* a JSON copy of the record: about 5× the bytes, and
//! a JSON parse on every read). The value is a short text header that the
//! Lua scripts parse with one `string.match`, followed by a binary tail
//! that only Rust reads:
//!
//! ```text
//! <version>,<idle ms>,<absolute ms>,<handle>,<user length or ->,<user bytes>
//! <created ms: i64 LE><last seen ms: i64 LE><authenticated ms: i64 LE, i64::MIN = none>
//! <CSRF secret: 32 bytes>
//! <IP length: u16 LE, 0xFFFF = none><IP bytes><user agent length: u16 LE, 0xFFFF = none><bytes>
//! <class: nothing for the default class, the byte `R` for `remember`>
//! <data: the JSON object, or nothing when it has no key>
//! ```
//!
//! The class marker keeps records written before lifetime classes existed
//! readable unchanged: their tail is the data alone, which is empty or a
//! JSON object starting with `{`, never `R`, so they decode as the default
//! class (what they were created under), and a default-class record is
//! still encoded byte for byte as before.
//!
//! The token hash is not in the value: it is the key. The version is kept
//! as decimal text so the scripts compare it as a string (no precision
//! lost to Lua's doubles).

use tessera::csrf::CsrfSecret;
use tessera::error::StoreError;
use tessera::policy::{Deadlines, SessionClass};
use tessera::record::{ClientMeta, Data, SessionHandle, SessionRecord};
use tessera::time::Timestamp;
use tessera::token::TokenHash;

/// `authenticated_at` of a session that never authenticated.
const NEVER: i64 = i64::MIN;
/// Length marker of an absent optional string.
const ABSENT: u16 = u16::MAX;
/// Marker of a [`SessionClass::Remember`] record, before its data.
const REMEMBER: u8 = b'R';

/// Encodes `record` (without its hash, which is the key).
pub(crate) fn encode(record: &SessionRecord) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(160 + record.user_id.as_ref().map_or(0, String::len));
    write_header(record, &mut out)?;
    out.extend_from_slice(&record.created_at.as_millis().to_le_bytes());
    out.extend_from_slice(&record.last_seen_at.as_millis().to_le_bytes());
    let auth = record.authenticated_at.map_or(NEVER, Timestamp::as_millis);
    out.extend_from_slice(&auth.to_le_bytes());
    out.extend_from_slice(record.csrf_secret.as_bytes());
    // The IP as its text, as stored before it was typed.
    let ip = record.client.ip.map(|ip| ip.to_string());
    for field in [&ip, &record.client.user_agent] {
        match field {
            Some(s) => {
                let len = u16::try_from(s.len())
                    .ok()
                    .filter(|&l| l != ABSENT)
                    .ok_or_else(|| StoreError::backend("client metadata too long"))?;
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            None => out.extend_from_slice(&ABSENT.to_le_bytes()),
        }
    }
    if record.class == SessionClass::Remember {
        out.push(REMEMBER);
    }
    if !record.data.is_empty() {
        serde_json::to_writer(&mut out, &record.data).map_err(StoreError::backend)?;
    }
    Ok(out)
}

/// `<version>,<idle ms>,<absolute ms>,<handle>,<user length or ->,<user>`.
fn write_header(record: &SessionRecord, out: &mut Vec<u8>) -> Result<(), StoreError> {
    let handle = record.handle.as_str();
    if handle.contains(',') {
        return Err(StoreError::backend("a session handle cannot contain ','"));
    }
    decimal(out, i128::from(record.version));
    out.push(b',');
    decimal(out, i128::from(record.deadlines.idle.as_millis()));
    out.push(b',');
    decimal(out, i128::from(record.deadlines.absolute.as_millis()));
    out.push(b',');
    out.extend_from_slice(handle.as_bytes());
    out.push(b',');
    match &record.user_id {
        Some(user) => {
            decimal(out, i128::try_from(user.len()).unwrap_or(i128::MAX));
            out.push(b',');
            out.extend_from_slice(user.as_bytes());
        }
        None => out.extend_from_slice(b"-,"),
    }
    Ok(())
}

/// Appends `n` in decimal, as `to_string` writes it, without the
/// formatting machinery or an allocation (this runs on every write).
fn decimal(out: &mut Vec<u8>, n: i128) {
    if n < 0 {
        out.push(b'-');
    }
    let mut digits = [0u8; 40];
    let mut at = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        // `rest % 10` is below 10, so the cast cannot truncate.
        #[allow(clippy::cast_possible_truncation)]
        let digit = (rest % 10) as u8;
        if let Some(slot) = digits.get_mut(at) {
            *slot = b'0' + digit;
        }
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(at..).unwrap_or_default());
}

/// Decodes the value stored under the key of `hash`.
pub(crate) fn decode(hash: &TokenHash, bytes: &[u8]) -> Result<SessionRecord, StoreError> {
    let mut r = Reader { bytes, at: 0 };
    let version: u64 = r.field()?.parse().map_err(|_| corrupt("version"))?;
    let idle = r.millis()?;
    let absolute = r.millis()?;
    let handle = r.field()?;
    let handle = SessionHandle::parse(handle).ok_or_else(|| corrupt("handle"))?;
    let user_id = r.user()?.map(str::to_owned);
    let created_at = Timestamp::from_millis(r.i64()?);
    let last_seen_at = Timestamp::from_millis(r.i64()?);
    let auth = r.i64()?;
    let csrf: [u8; 32] = r.take(32)?.try_into().map_err(|_| corrupt("CSRF secret"))?;
    // Text that is not an IP address reads as none rather than failing
    // the load (`ClientMeta::parse_ip`).
    let ip = r.opt_str()?.as_deref().and_then(ClientMeta::parse_ip);
    let user_agent = r.opt_str()?;
    let mut rest = r.rest();
    let class = match rest.split_first() {
        Some((&REMEMBER, data)) => {
            rest = data;
            SessionClass::Remember
        }
        _ => SessionClass::Default,
    };
    let data: Data = if rest.is_empty() {
        Data::new()
    } else {
        serde_json::from_slice(rest)
            .map_err(|e| StoreError::Corrupt(format!("session data: {e}")))?
    };
    Ok(SessionRecord {
        hash: *hash,
        handle,
        user_id,
        data,
        created_at,
        last_seen_at,
        authenticated_at: (auth != NEVER).then(|| Timestamp::from_millis(auth)),
        deadlines: Deadlines {
            idle: Timestamp::from_millis(idle),
            absolute: Timestamp::from_millis(absolute),
        },
        class,
        version,
        csrf_secret: CsrfSecret::from_bytes(csrf),
        client: ClientMeta { ip, user_agent },
    })
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("stored session: bad {what}"))
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        let end = self.at.checked_add(n).ok_or_else(|| corrupt("length"))?;
        let out = self
            .bytes
            .get(self.at..end)
            .ok_or_else(|| corrupt("length"))?;
        self.at = end;
        Ok(out)
    }

    /// Text up to the next `,` (consumed).
    fn field(&mut self) -> Result<&'a str, StoreError> {
        let rest = self.bytes.get(self.at..).unwrap_or_default();
        let len = rest
            .iter()
            .position(|&b| b == b',')
            .ok_or_else(|| corrupt("header"))?;
        let text = std::str::from_utf8(self.take(len)?).map_err(|_| corrupt("header"))?;
        self.take(1)?;
        Ok(text)
    }

    fn millis(&mut self) -> Result<i64, StoreError> {
        self.field()?.parse().map_err(|_| corrupt("deadline"))
    }

    /// The user id: `-` for none, else its length and its bytes.
    fn user(&mut self) -> Result<Option<&'a str>, StoreError> {
        let len = self.field()?;
        if len == "-" {
            return Ok(None);
        }
        let len: usize = len.parse().map_err(|_| corrupt("user"))?;
        let user = std::str::from_utf8(self.take(len)?).map_err(|_| corrupt("user"))?;
        Ok(Some(user))
    }

    fn i64(&mut self) -> Result<i64, StoreError> {
        let raw: [u8; 8] = self.take(8)?.try_into().map_err(|_| corrupt("time"))?;
        Ok(i64::from_le_bytes(raw))
    }

    fn opt_str(&mut self) -> Result<Option<String>, StoreError> {
        let raw: [u8; 2] = self.take(2)?.try_into().map_err(|_| corrupt("client"))?;
        let len = u16::from_le_bytes(raw);
        if len == ABSENT {
            return Ok(None);
        }
        let text =
            std::str::from_utf8(self.take(usize::from(len))?).map_err(|_| corrupt("client"))?;
        Ok(Some(text.to_owned()))
    }

    fn rest(&self) -> &'a [u8] {
        self.bytes.get(self.at..).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use tessera::policy::SessionPolicy;
    use tessera::token::SessionToken;

    use super::*;

    fn sample(user: Option<&str>) -> SessionRecord {
        let now = Timestamp::from_millis(1_700_000_000_000);
        let token = SessionToken::generate().unwrap();
        SessionRecord::new(
            token.hash(),
            user.map(str::to_owned),
            now,
            SessionPolicy::default().deadlines_at(now),
            ClientMeta::new(
                Some([203, 0, 113, 9].into()),
                Some("curl/8, \"odd\" ü".into()),
            ),
        )
        .unwrap()
    }

    #[test]
    fn client_ip_is_stored_as_text_and_text_that_is_no_address_reads_as_none() {
        let mut record = sample(Some("alice"));
        record.client.ip = Some("2001:db8::7".parse().unwrap());
        let bytes = encode(&record).unwrap();
        assert!(bytes.windows(11).any(|w| w == b"2001:db8::7"));
        assert_eq!(decode(&record.hash, &bytes).unwrap(), record);
        // A value written before the address was typed, with any text of
        // the same length in its place.
        let at = bytes.windows(11).position(|w| w == b"2001:db8::7").unwrap();
        let mut old = bytes.clone();
        old.splice(at..at + 11, *b"not-an-addr");
        let decoded = decode(&record.hash, &old).unwrap();
        assert_eq!(decoded.client.ip, None);
        assert_eq!(decoded.client.user_agent, record.client.user_agent);
    }

    #[test]
    fn records_round_trip() {
        for user in [None, Some(""), Some("alice"), Some("a,b,{c}\n-ü")] {
            let mut record = sample(user);
            record.data.insert("n".into(), 7.into());
            record.data.insert("s".into(), "x,y".into());
            record.authenticated_at = user.map(|_| record.created_at);
            record.version = u64::MAX;
            let bytes = encode(&record).unwrap();
            assert_eq!(decode(&record.hash, &bytes).unwrap(), record);
        }
        let mut bare = sample(None);
        bare.client = ClientMeta::default();
        let bytes = encode(&bare).unwrap();
        assert_eq!(decode(&bare.hash, &bytes).unwrap(), bare);
    }

    #[test]
    fn remember_class_round_trips_and_default_keeps_the_old_layout() {
        let mut record = sample(Some("alice"));
        record.data.insert("n".into(), 7.into());
        let old_layout = encode(&record).unwrap();
        record.class = SessionClass::Remember;
        let bytes = encode(&record).unwrap();
        assert_eq!(decode(&record.hash, &bytes).unwrap(), record);
        // The remember marker is the only difference: one byte before the
        // data. A record stored before classes existed is the old layout
        // and reads as the default class.
        let data_len = serde_json::to_vec(&record.data).unwrap().len();
        let at = old_layout.len() - data_len;
        let mut expected = old_layout.clone();
        expected.insert(at, REMEMBER);
        assert_eq!(bytes, expected);
        let old = decode(&record.hash, &old_layout).unwrap();
        assert_eq!(old.class, SessionClass::Default);
        // Without data the marker is the whole tail.
        record.data.clear();
        let bytes = encode(&record).unwrap();
        assert_eq!(bytes.last(), Some(&REMEMBER));
        assert_eq!(decode(&record.hash, &bytes).unwrap(), record);
    }

    #[test]
    fn decimals_are_written_as_to_string_does() {
        for n in [
            0i128,
            1,
            9,
            10,
            99,
            100,
            -1,
            -10,
            i128::from(i64::MIN),
            i128::from(u64::MAX),
        ] {
            let mut out = Vec::new();
            decimal(&mut out, n);
            assert_eq!(String::from_utf8(out).unwrap(), n.to_string());
        }
    }

    #[test]
    fn encoding_round_trips_byte_for_byte() {
        // The write path sends the encoding of the caller's loaded copy as
        // the value it expects in Redis (`CAS` compares whole values), so
        // decoding and encoding again must give the same bytes.
        let mut record = sample(Some("a,b"));
        record.version = 12;
        for (key, value) in [
            ("n", serde_json::json!(7)),
            ("neg", serde_json::json!(-3)),
            ("big", serde_json::json!(u64::MAX)),
            ("x", serde_json::json!(1.5)),
            ("tiny", serde_json::json!(1e-300)),
            ("s", serde_json::json!("\u{e9}t\u{e9} \"q\" \\ \u{1}")),
            ("z", serde_json::json!({"b": [1, null, true], "a": {}})),
        ] {
            record.data.insert(key.into(), value);
        }
        for r in [record, sample(None)] {
            let bytes = encode(&r).unwrap();
            let again = encode(&decode(&r.hash, &bytes).unwrap()).unwrap();
            assert_eq!(bytes, again);
        }
    }

    #[test]
    fn the_hash_is_not_in_the_value() {
        let record = sample(Some("alice"));
        let bytes = encode(&record).unwrap();
        let hex = record.hash.to_hex();
        assert!(!bytes.windows(32).any(|w| w == record.hash.as_bytes()));
        assert!(!bytes.windows(hex.len()).any(|w| w == hex.as_bytes()));
    }

    #[test]
    fn truncated_values_are_corrupt_not_panics() {
        // Without data, the value ends with the user agent's bytes, so no
        // proper prefix is a whole record: every one must fail cleanly.
        let record = sample(Some("alice"));
        let bytes = encode(&record).unwrap();
        for cut in 0..bytes.len() {
            assert!(decode(&record.hash, &bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut with_data = record.clone();
        with_data.data.insert("n".into(), 7.into());
        let mut bytes = encode(&with_data).unwrap();
        bytes.pop();
        assert!(matches!(
            decode(&record.hash, &bytes),
            Err(StoreError::Corrupt(_))
        ));
    }
}
