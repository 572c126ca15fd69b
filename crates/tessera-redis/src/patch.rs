//! [`Store::patch`](tessera::store::Store::patch) on Redis: one script
//! applies the typed changes, so a session write is one round trip. Which
//! script depends on what the caller knows:
//!
//! - **With the record the request loaded** (`base`, as the axum layer and
//!   a cached node pass it), the change is applied in Rust and written with
//!   the compare-and-set script (`CAS` in the `scripts` module, through
//!   `modify_loaded`): Redis only compares the stored value with the base
//!   and stores the new one. Measured with `bench/redis-instr.sh` (what
//!   redis-server executes per `POST /counter`, under callgrind): 56.9k
//!   instructions, against 132.7k for the patch script below, which parses
//!   and rebuilds the record in Lua. A stale base is not lost: the script
//!   answers with the stored value and the change is applied to that (one
//!   more round trip); writes of one session in this process are chained
//!   (see `Stripe` in the crate) and do not conflict with each other.
//! - **Without a loaded record** (a client's write through `tessera
//!   serve`, which does not load the session first), the patch script
//!   below applies the change to whatever is stored, with no read before
//!   it and no retry, however many writes of the session race.
//!
//! The patch script edits the compact value of the `codec` module in place: it
//! parses the text header (version, deadlines), reads the class marker and
//! creation time from the binary tail, and treats the data tail (the JSON
//! object `serde_json` wrote) as a list of `"key":value` spans. Values are
//! never decoded in Lua — only split at their boundaries and copied as
//! bytes — so nothing is rounded or re-encoded (Lua's `cjson` would round
//! numbers to 14 digits and turn `[]` into `{}`). Only an increment reads a
//! value, and only when it is an integer of at most 15 digits, which a Lua
//! double holds exactly; anything else makes the script decline, and the
//! Rust side applies the patch through the compare-and-set path instead.
//!
//! Every check of the compare-and-set path holds: the record must be live
//! at the request's `now` (after the class rule of
//! [`Patch::remember_cap`]), the version is bumped, the handle and user are
//! copied unchanged, and a deleted or tombstoned session (no record) is
//! never written. Like every session script it reads the record through
//! `record_lua!` (so a session stored in the layout before string keys is
//! patched too) and stores a string.

use std::sync::LazyLock;

use fred::bytes::Bytes;
use fred::types::Value;
use fred::types::scripts::Script;
use tessera::error::StoreError;
use tessera::record::SessionRecord;
use tessera::store::{Patch, PatchOp, PatchOutcome, PatchRefusal, patch_by_modify};
use tessera::time::Timestamp;
use tessera::token::TokenHash;

use crate::{RedisStore, codec, unexpected};

/// Lua: applies a patch to a session key.
///
/// KEYS: session key. ARGV: now ms, now as 8 bytes little-endian, activity
/// (`1`/`0`), the idle deadline (ms) that activity gives a default-class
/// record and the one it gives a remember-class record (now plus each
/// class's idle timeout, computed here so the script formats no number
/// for them), remember cap ms (`-1`: none), data limit (`-1`: none), then four
/// arguments per op: `s key value _` (set), `r key _ _` (remove),
/// `i key by _` (increment), `c key expected new` (compare-and-set; an
/// empty `expected` means absent, an empty `new` removes). Keys are
/// JSON-encoded strings, values JSON text, as `serde_json` writes them.
///
/// Returns `{0}` missing or not live at `now`; `{1, new value}` applied;
/// `{2, stored value, why}` refused (`e` expectation, `i` not an integer,
/// `t` too large); `{3}` declined (the Rust side applies it instead).
const PATCH: &str = concat!(
    crate::scripts::record_lua!(),
    r#"
local byte, sub, find, match, tonumber = string.byte, string.sub, string.find, string.match, tonumber
local c = rec(KEYS[1])
if not c then return {0} end
-- Header: version, idle and absolute deadlines, then (from hp) handle and
-- user length; the user's bytes end where the binary tail starts (p).
local v, it, at, hp, ul, up = match(c, '^(%d+),(%-?%d+),(%-?%d+),()[^,]*,([%-%d]+),()')
if not v or #v > 15 then return {3} end
local p = up
if ul ~= '-' then
  local n = tonumber(ul)
  if not n or n < 0 then return {3} end
  p = up + n
end
-- Binary tail: created, last seen, authenticated (i64 LE each), CSRF
-- secret (32 bytes), IP and user agent (u16 LE length, 0xFFFF = none),
-- then the class marker `R` of the remember class.
local q = p + 56
for _ = 1, 2 do
  local lo, hi = byte(c, q, q + 1)
  if not hi then return {3} end
  q = q + 2
  if lo ~= 255 or hi ~= 255 then q = q + lo + 256 * hi end
end
local remember = byte(c, q) == 82
local ds = remember and q + 1 or q
local now = tonumber(ARGV[1])
local idle, abs = tonumber(it), tonumber(at)
if remember then
  local cap = tonumber(ARGV[6])
  if cap >= 0 then
    local created = struct.unpack('<i8', c, p)
    if created + cap < abs then
      abs = created + cap
      at = string.format('%d', abs)
      if idle > abs then idle, it = abs, at end
    end
  end
end
if now >= idle or now >= abs then return {0} end

-- The data as ordered "key":value spans of c (bytes, never decoded).
local keys, vals = {}, {}
local function str_end(at)
  local j = at + 1
  while true do
    local k = find(c, '["\\]', j)
    if not k then return nil end
    if byte(c, k) == 34 then return k end
    j = k + 2
  end
end
local function value_end(at)
  local ch = byte(c, at)
  if ch == 34 then return str_end(at) end
  if ch == 123 or ch == 91 then
    local depth, j = 0, at
    while true do
      local k = find(c, '[%[%]{}"]', j)
      if not k then return nil end
      local b = byte(c, k)
      if b == 34 then
        k = str_end(k)
        if not k then return nil end
      elseif b == 123 or b == 91 then depth = depth + 1
      else
        depth = depth - 1
        if depth == 0 then return k end
      end
      j = k + 1
    end
  end
  local k = find(c, '[,}%]]', at)
  if not k then return nil end
  return k - 1
end
local last = #c
if ds <= last then
  if byte(c, ds) ~= 123 then return {3} end
  local j = ds + 1
  if byte(c, j) ~= 125 then
    while true do
      local ke = str_end(j)
      if not ke or byte(c, ke + 1) ~= 58 then return {3} end
      local ve = value_end(ke + 2)
      if not ve then return {3} end
      local key = sub(c, j, ke)
      keys[#keys + 1] = key
      vals[key] = sub(c, ke + 2, ve)
      local sep = byte(c, ve + 1)
      if sep == 125 then
        if ve + 1 ~= last then return {3} end
        break
      end
      if sep ~= 44 then return {3} end
      j = ve + 2
    end
  end
end

-- An increment reads integers of at most 15 digits: exact in a double,
-- and so is the sum of two.
local function small(n) return #n - (byte(n, 1) == 45 and 1 or 0) <= 15 end
local nops = (#ARGV - 7) / 4
for o = 0, nops - 1 do
  local op, key, x, y = ARGV[8 + 4 * o], ARGV[9 + 4 * o], ARGV[10 + 4 * o], ARGV[11 + 4 * o]
  if op == 'c' then
    if (vals[key] or '') ~= x then return {2, c, 'e'} end
    op = (y == '') and 'r' or 's'
    x = y
  end
  if op == 'i' then
    local have = vals[key] or '0'
    if not match(have, '^%-?%d+$') then return {2, c, 'i'} end
    if not small(have) or not small(x) then return {3} end
    x = string.format('%d', tonumber(have) + tonumber(x))
    op = 's'
  end
  if op == 's' then
    if not vals[key] then keys[#keys + 1] = key end
    vals[key] = x
  elseif op == 'r' then
    vals[key] = nil
  else
    return {3}
  end
end
local parts, n = {}, 0
for _, key in ipairs(keys) do
  local val = vals[key]
  if val then
    n = n + 1
    parts[n] = key .. ':' .. val
    vals[key] = nil
  end
end
local out = ''
if n > 0 then out = '{' .. table.concat(parts, ',') .. '}' end
local limit = tonumber(ARGV[7])
if limit >= 0 and nops > 0 and math.max(#out, 2) > limit then return {2, c, 't'} end

-- Activity moves the idle deadline (Rust sent now + the class's idle
-- timeout, ARGV[4] and ARGV[5]) and the last-seen time, never past the
-- absolute deadline.
local seen = sub(c, p + 8, p + 15)
if ARGV[3] == '1' then
  seen = ARGV[2]
  it = remember and ARGV[5] or ARGV[4]
  idle = tonumber(it)
  if idle > abs then idle, it = abs, at end
end
-- Numbers are written with '%d': exact for every integer a double holds
-- exactly, and about half the cost of '%.0f' in Redis's Lua.
local new = string.format('%d', tonumber(v) + 1) .. ',' .. it .. ',' .. at .. ',' .. sub(c, hp, p + 7) .. seen
  .. sub(c, p + 16, ds - 1) .. out
redis.call('SET', KEYS[1], new, 'PXAT', idle < abs and it or at)
return {1, new}
"#
);

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::from_lua(PATCH));

/// The script's arguments for `patch` at `now`.
fn arguments(patch: &Patch, now: Timestamp) -> Result<Vec<Value>, StoreError> {
    let millis = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let (activity, idle, remember_idle) = match patch.activity {
        Some(a) => (
            "1",
            (now + a.idle).as_millis(),
            (now + a.remember_idle).as_millis(),
        ),
        None => ("0", 0, 0),
    };
    let json = |v: &serde_json::Value| -> Result<Value, StoreError> {
        Ok(Value::from(Bytes::from(
            serde_json::to_vec(v).map_err(StoreError::backend)?,
        )))
    };
    let mut args = Vec::with_capacity(7 + 4 * patch.ops.len());
    args.push(Value::from(now.as_millis()));
    args.push(Value::from(Bytes::copy_from_slice(
        &now.as_millis().to_le_bytes(),
    )));
    args.push(Value::from(activity));
    args.push(Value::from(idle));
    args.push(Value::from(remember_idle));
    args.push(Value::from(patch.remember_cap.map_or(-1, millis)));
    args.push(Value::from(
        patch
            .max_data_bytes
            .map_or(-1, |m| i64::try_from(m).unwrap_or(i64::MAX)),
    ));
    let none = || Value::from("");
    for op in &patch.ops {
        let key = |k: &str| -> Result<Value, StoreError> {
            Ok(Value::from(
                serde_json::to_string(k).map_err(StoreError::backend)?,
            ))
        };
        let [code, k, x, y] = match op {
            PatchOp::Set { key: k, value } => [Value::from("s"), key(k)?, json(value)?, none()],
            PatchOp::Remove { key: k } => [Value::from("r"), key(k)?, none(), none()],
            PatchOp::Increment { key: k, by } => [
                Value::from("i"),
                key(k)?,
                Value::from(by.to_string()),
                none(),
            ],
            PatchOp::CompareAndSet {
                key: k,
                expected,
                new,
            } => [
                Value::from("c"),
                key(k)?,
                expected.as_ref().map_or_else(|| Ok(none()), json)?,
                new.as_ref().map_or_else(|| Ok(none()), json)?,
            ],
            // A kind of change this script does not know yet.
            _ => return Err(StoreError::backend("unsupported patch op")),
        };
        args.extend([code, k, x, y]);
    }
    Ok(args)
}

impl RedisStore {
    /// [`Store::patch`](tessera::store::Store::patch): the compare-and-set
    /// path from `base` when the caller loaded the record, else one
    /// `EVALSHA` of the patch script, which falls back to the
    /// compare-and-set path only when it declines (see the module docs).
    pub(crate) async fn patch_record(
        &self,
        hash: &TokenHash,
        base: Option<&SessionRecord>,
        patch: &Patch,
        now: Timestamp,
    ) -> Result<PatchOutcome, StoreError> {
        if base.is_some_and(|b| b.hash == *hash) {
            return patch_by_modify(self, hash, base, patch, now).await;
        }
        let args = match arguments(patch, now) {
            Ok(args) => args,
            Err(_) => return patch_by_modify(self, hash, base, patch, now).await,
        };
        let reply = self
            .bounded(self.eval_values(&SCRIPT, self.session_key(hash), args))
            .await?;
        let Value::Array(reply) = reply else {
            return Err(unexpected("patch"));
        };
        let mut reply = reply.into_iter();
        let code = reply.next().and_then(|v| v.as_i64());
        let stored = reply.next().and_then(Value::into_bytes);
        let why = reply.next().and_then(|v| v.into_string());
        match (code, stored) {
            (Some(0), _) => Ok(PatchOutcome::Missing),
            (Some(1), Some(value)) => Ok(PatchOutcome::Applied(codec::decode(hash, &value)?)),
            (Some(2), Some(value)) => {
                let why = match why.as_deref() {
                    Some("e") => PatchRefusal::Expectation,
                    Some("i") => PatchRefusal::NotAnInteger,
                    Some("t") => PatchRefusal::TooLarge,
                    _ => return Err(unexpected("patch")),
                };
                Ok(PatchOutcome::Refused {
                    why,
                    record: codec::decode(hash, &value)?,
                })
            }
            (Some(3), _) => patch_by_modify(self, hash, base, patch, now).await,
            _ => Err(unexpected("patch")),
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn arguments_encode_keys_and_values_as_serde_json_does() {
        let patch = Patch::new(vec![
            PatchOp::Set {
                key: "a\"b".into(),
                value: serde_json::json!([1, "x"]),
            },
            PatchOp::CompareAndSet {
                key: "k".into(),
                expected: None,
                new: Some(serde_json::json!(1)),
            },
        ]);
        let args = arguments(&patch, Timestamp::from_millis(5)).unwrap();
        let text: Vec<String> = args
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes().unwrap_or_default()).into_owned())
            .collect();
        assert_eq!(args.len(), 7 + 8);
        assert_eq!(text[8], r#""a\"b""#);
        assert_eq!(text[9], r#"[1,"x"]"#);
        assert_eq!(&text[11..15], ["c", r#""k""#, "", "1"]);
    }
}
