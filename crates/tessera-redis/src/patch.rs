//! [`Store::patch`](tessera::store::Store::patch) on Redis: one Lua script
//! applies the typed changes to the stored record on the server, so a
//! session write is one round trip with no read before it and no
//! compare-and-set retry, however many writes of one session race.
//!
//! The script edits the compact value of the `codec` module in place: it
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
/// (`1`/`0`), idle ms of the default class, idle ms of the remember class,
/// remember cap ms (`-1`: none), data limit (`-1`: none), then four
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
local c = rec(KEYS[1])
if not c then return {0} end
local v, i, a, hp = string.match(c, '^(%d+),(%-?%d+),(%-?%d+),()')
if not v or #v > 15 then return {3} end
local h, ul, up = string.match(c, '^([^,]*),([%-%d]+),()', hp)
if not h then return {3} end
local p = up
if ul ~= '-' then
  local n = tonumber(ul)
  if not n or n < 0 then return {3} end
  p = up + n
end
-- Binary tail: created, last seen, authenticated (i64 LE each), CSRF
-- secret (32 bytes), IP and user agent (u16 LE length, 0xFFFF = none).
local created = struct.unpack('<i8', c, p)
local q = p + 24 + 32
for _ = 1, 2 do
  local len = struct.unpack('<H', c, q)
  q = q + 2
  if len ~= 65535 then q = q + len end
end
local remember = string.sub(c, q, q) == 'R'
local ds = remember and q + 1 or q
local now = tonumber(ARGV[1])
local idle, abs = tonumber(i), tonumber(a)
local cap = tonumber(ARGV[6])
if remember and cap >= 0 and created + cap < abs then
  abs = created + cap
  if idle > abs then idle = abs end
end
if now >= idle or now >= abs then return {0} end

-- The data as ordered "key":value spans (bytes, never decoded).
local data = string.sub(c, ds)
local keys, vals = {}, {}
local function str_end(s, at)
  local j = at + 1
  while true do
    local k = string.find(s, '["\\]', j)
    if not k then return nil end
    if string.sub(s, k, k) == '"' then return k end
    j = k + 2
  end
end
local function value_end(s, at)
  local ch = string.sub(s, at, at)
  if ch == '"' then return str_end(s, at) end
  if ch == '{' or ch == '[' then
    local depth, j = 0, at
    while true do
      local k = string.find(s, '[%[%]{}"]', j)
      if not k then return nil end
      local b = string.sub(s, k, k)
      if b == '"' then
        k = str_end(s, k)
        if not k then return nil end
      elseif b == '{' or b == '[' then depth = depth + 1
      else
        depth = depth - 1
        if depth == 0 then return k end
      end
      j = k + 1
    end
  end
  local k = string.find(s, '[,}%]]', at)
  if not k then return nil end
  return k - 1
end
if #data > 0 then
  if string.sub(data, 1, 1) ~= '{' then return {3} end
  local j = 2
  if string.sub(data, j, j) ~= '}' then
    while true do
      local ke = str_end(data, j)
      if not ke or string.sub(data, ke + 1, ke + 1) ~= ':' then return {3} end
      local ve = value_end(data, ke + 2)
      if not ve then return {3} end
      local key = string.sub(data, j, ke)
      keys[#keys + 1] = key
      vals[key] = string.sub(data, ke + 2, ve)
      local sep = string.sub(data, ve + 1, ve + 1)
      if sep == '}' then break end
      if sep ~= ',' then return {3} end
      j = ve + 2
    end
  end
end

-- At most 15 digits: exact in a double, and so is the sum of two.
local function small(n) return #(string.gsub(n, '^%-', '')) <= 15 end
local nops = (#ARGV - 7) / 4
for o = 0, nops - 1 do
  local op, key, x, y = ARGV[8 + 4 * o], ARGV[9 + 4 * o], ARGV[10 + 4 * o], ARGV[11 + 4 * o]
  if op == 'c' then
    local have = vals[key] or ''
    if have ~= x then return {2, c, 'e'} end
    op = (y == '') and 'r' or 's'
    x = y
  end
  if op == 'i' then
    local have = vals[key] or '0'
    if not string.match(have, '^%-?%d+$') then return {2, c, 'i'} end
    if not small(have) or not small(x) then return {3} end
    x = string.format('%.0f', tonumber(have) + tonumber(x))
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
local parts = {}
for _, key in ipairs(keys) do
  local val = vals[key]
  if val then
    parts[#parts + 1] = key .. ':' .. val
    vals[key] = nil
  end
end
local out = ''
if #parts > 0 then out = '{' .. table.concat(parts, ',') .. '}' end
local limit = tonumber(ARGV[7])
if limit >= 0 and nops > 0 and math.max(#out, 2) > limit then return {2, c, 't'} end

local seen = string.sub(c, p + 8, p + 15)
if ARGV[3] == '1' then
  seen = ARGV[2]
  local t = remember and tonumber(ARGV[5]) or tonumber(ARGV[4])
  idle = now + t
  if idle > abs then idle = abs end
end
local nv = string.format('%.0f', tonumber(v) + 1)
local new = nv .. ',' .. string.format('%.0f', idle) .. ',' .. string.format('%.0f', abs) .. ','
  .. string.sub(c, hp, p + 7) .. seen .. string.sub(c, p + 16, ds - 1) .. out
redis.call('SET', KEYS[1], new, 'PXAT', string.format('%.0f', math.min(idle, abs)))
return {1, new}
"#
);

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::from_lua(PATCH));

/// The script's arguments for `patch` at `now`.
fn arguments(patch: &Patch, now: Timestamp) -> Result<Vec<Value>, StoreError> {
    let millis = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let (activity, idle, remember_idle) = match patch.activity {
        Some(a) => ("1", millis(a.idle), millis(a.remember_idle)),
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
    /// [`Store::patch`](tessera::store::Store::patch): one `EVALSHA` of
    /// the patch script; the compare-and-set path only when the script
    /// declines (see the module docs).
    pub(crate) async fn patch_record(
        &self,
        hash: &TokenHash,
        base: Option<&SessionRecord>,
        patch: &Patch,
        now: Timestamp,
    ) -> Result<PatchOutcome, StoreError> {
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
