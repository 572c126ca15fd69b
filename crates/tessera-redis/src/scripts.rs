//! The Lua scripts. Every script touches exactly one key, so each runs
//! atomically on whichever node owns that key's slot, on standalone Redis
//! and on Redis Cluster alike (cross-slot scripts are impossible on a
//! cluster; see the crate docs for how the multi-key operations are
//! ordered instead).
//!
//! Session keys are plain strings holding the record in the compact
//! encoding of the `codec` module, whose text header (version, idle and
//! absolute deadlines, handle, user) most scripts parse with `header_lua!`;
//! the write path's `CAS` compares whole values instead, which is much
//! cheaper. Scripts read a session through `record_lua!`, which also reads
//! the layout before string keys (a hash with the record in field `c`);
//! every write stores a string, so an old session is converted by its
//! first write. Versions are compared as strings, so no precision is
//! lost to Lua's doubles; deadlines are compared as numbers (milliseconds
//! since the epoch are exact in a double until the year 287396).

use fred::types::scripts::Script;

/// Lua: `rec(k)` returns the record stored under session key `k`, or
/// `false` when there is none (no key, or a tombstone: a string starting
/// with `t`). A key of the layout before string keys (a hash, whose `GET`
/// fails with `WRONGTYPE`) is read from its field `c`; its tombstone was
/// field `t`, which `HGET c` does not return.
macro_rules! record_lua {
    () => {
        r"
local function rec(k)
  local c = redis.pcall('GET', k)
  if type(c) == 'table' then c = redis.call('HGET', k, 'c') end
  if not c or string.byte(c, 1) == 116 then return false end
  return c
end
"
    };
}
pub(crate) use record_lua;

/// Lua: `hdr(c)` returns version (string), idle and absolute deadlines
/// (strings), handle, and user (`false` when anonymous) from an encoded
/// record, or nothing when the header does not parse.
macro_rules! header_lua {
    () => {
        r"
local function hdr(c)
  local v, i, a, h, ul, p = string.match(c, '^(%d+),(%-?%d+),(%-?%d+),([^,]*),([%-%d]+),()')
  if not v then return nil end
  local u = false
  if ul ~= '-' then
    local n = tonumber(ul)
    if not n or n < 0 then return nil end
    u = string.sub(c, p, p + n - 1)
  end
  return v, i, a, h, u
end
"
    };
}

/// Creates a session key if absent (a tombstone, or a key of the old
/// layout, is present: a token hash is never reused).
///
/// KEYS: session key. ARGV: encoded record, expire-at ms.
/// Returns 1 when created, 0 when the key exists.
const CREATE: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PXAT', ARGV[2]) then return 1 end
return 0
";

/// Compare-and-set of a session key on a version alone (`Store::update`,
/// where the caller names the expected version but not the record it
/// read; the hot path uses `CAS`).
///
/// KEYS: session key. ARGV: now ms, expected version, encoded new record
/// (its version must be the next one), expire-at ms.
/// Returns `{0}` missing or expired at `now`; `{1, current record}` version
/// conflict; `{2, old absolute}` applied; `{3}` the write tried to change
/// the handle or user; `{4}` a header does not parse.
const UPDATE: &str = concat!(
    header_lua!(),
    record_lua!(),
    r"
local c = rec(KEYS[1])
if not c then return {0} end
local v, i, a, h, u = hdr(c)
if not v then return {4} end
local now = tonumber(ARGV[1])
if now >= tonumber(i) or now >= tonumber(a) then return {0} end
if v ~= ARGV[2] then return {1, c} end
local nv, ni, na, nh, nu = hdr(ARGV[3])
if not nv then return {4} end
if nh ~= h or nu ~= u then return {3} end
redis.call('SET', KEYS[1], ARGV[3], 'PXAT', ARGV[4])
return {2, a}
"
);

/// Compare-and-set of a session key against the record the write was
/// computed from: the hot write path (`modify`, `modify_loaded`).
///
/// KEYS: session key. ARGV: the base record's stored value (the exact
/// bytes the write was computed from), encoded new record, expire-at ms.
/// Returns 0 missing; the stored value when it is not the base (another
/// write came first); 2 applied. (Plain integers, not tables: building a
/// Lua table per call costs measurable Redis CPU on this hot path.)
///
/// Why the *whole* value is compared, not the version: within a process,
/// a write may be computed from another write of the same session that is
/// still in flight (see `Stripe` in the crate) and may yet fail. Another
/// process can meanwhile store a record with the same version, deadlines
/// and identity but other data; a version (or header) comparison would
/// then accept a write that drops that other process's change (a lost
/// update, docs/design.md, invariant 8). Equal bytes mean the stored record is
/// exactly the base. Lua interns strings, so the comparison costs next to
/// nothing. The caller checked that base valid at its `now` before sending
/// (so an ended session is not written: docs/design.md, invariant 3) and copied the
/// base's handle and user into the new record, so a write cannot change
/// who a session belongs to; a stale or forged base does not match and
/// gets the stored record back instead.
const CAS: &str = concat!(
    record_lua!(),
    r"
local c = rec(KEYS[1])
if not c then return 0 end
if c ~= ARGV[1] then return c end
redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
return 2
"
);

/// Compare-and-delete of the old key of a rotation.
///
/// KEYS: old session key. ARGV: now ms, expected version, the new record's
/// handle.
/// Returns `{0}` missing or expired, `{1}` version conflict, `{2}` deleted
/// (same handle: a token rotation), `{3}` the header does not parse,
/// `{4, old handle, old user|false}` deleted, and the session had another
/// handle: a sign-in moving it to a new identity, whose old handle the
/// caller then retires.
const TAKE: &str = concat!(
    header_lua!(),
    record_lua!(),
    r"
local c = rec(KEYS[1])
if not c then return {0} end
local v, i, a, h, u = hdr(c)
if not v then return {3} end
local now = tonumber(ARGV[1])
if now >= tonumber(i) or now >= tonumber(a) then return {0} end
if v ~= ARGV[2] then return {1} end
redis.call('DEL', KEYS[1])
if h ~= ARGV[3] then return {4, h, u} end
return {2}
"
);

/// Conditional delete of a session key, leaving a tombstone.
///
/// KEYS: session key. ARGV: required handle (`''` = any), has_owner,
/// owner, excepted handle (`''` = none), tombstone (`''` = none: the
/// stored `tessera::ended::Ended` code).
/// Returns `{0}` when nothing was deleted, `{1, handle, user|false}` when
/// the record was deleted. A key whose header does not parse is deleted
/// only by an unconditional delete (no handle, owner or exception given).
///
/// With a tombstone, the same key then holds only `t<absolute deadline
/// ms>,<reason>` (nothing secret) and expires at that deadline: the record
/// and its tombstone change places atomically, on one key, so this holds
/// on a cluster too. Readers of the record (`rec`) find nothing.
const DELETE_IF: &str = concat!(
    header_lua!(),
    record_lua!(),
    r"
local c = rec(KEYS[1])
if not c then return {0} end
local v, i, a, h, u = hdr(c)
if not v then
  if ARGV[1] == '' and ARGV[2] ~= '1' and ARGV[4] == '' then
    redis.call('DEL', KEYS[1])
  end
  return {0}
end
if ARGV[1] ~= '' and h ~= ARGV[1] then return {0} end
if ARGV[2] == '1' and u ~= ARGV[3] then return {0} end
if ARGV[4] ~= '' and h == ARGV[4] then return {0} end
redis.call('DEL', KEYS[1])
if ARGV[5] ~= '' then
  redis.call('SET', KEYS[1], 't' .. a .. ',' .. ARGV[5], 'PXAT', a)
end
return {1, h, u}
"
);

/// Claims a handle for a new session.
///
/// KEYS: handle key. ARGV: the session hash's field name (base64url),
/// expire-at ms.
/// Returns 1 when claimed, 0 when the handle is taken.
const CLAIM: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], '1')
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return 1
";

/// Registers a pending key of a rotation under its handle and returns the
/// handle's revocation generation.
///
/// KEYS: handle key. ARGV: the new session hash's field name
/// (base64url), expire-at ms.
/// Returns the generation (`''` if never revoked).
const PENDING: &str = r"
redis.call('HSET', KEYS[1], ARGV[1], '1')
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIREAT', KEYS[1], ARGV[2])
else
  redis.call('PEXPIREAT', KEYS[1], ARGV[2], 'GT')
end
return redis.call('HGET', KEYS[1], 'g') or ''
";

/// Extends a handle key's expiry (never shortens it).
///
/// KEYS: handle key. ARGV: expire-at ms. Returns 1.
const EXTEND: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIREAT', KEYS[1], ARGV[1])
else
  redis.call('PEXPIREAT', KEYS[1], ARGV[1], 'GT')
end
return 1
";

/// Completes a rotation if the handle was not revoked meanwhile.
///
/// KEYS: handle key. ARGV: generation read by `PENDING`, then the old
/// hash's field names (its current and its earlier spelling, see
/// `RedisStore::hash_fields`).
/// Returns 1 when the generation is unchanged (and forgets the old hash),
/// 0 when a revocation ran since `PENDING`.
const FINISH: &str = r"
local g = redis.call('HGET', KEYS[1], 'g') or ''
if g ~= ARGV[1] then return 0 end
for n = 2, #ARGV do redis.call('HDEL', KEYS[1], ARGV[n]) end
return 1
";

/// Starts revoking a handle: bumps its generation (so an in-flight
/// rotation aborts) and returns every session hash registered under it.
///
/// KEYS: handle key. ARGV: fresh random generation.
const REVOKE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
redis.call('HSET', KEYS[1], 'g', ARGV[1])
local out = {}
for _, k in ipairs(redis.call('HKEYS', KEYS[1])) do
  if k ~= 'g' then out[#out + 1] = k end
end
return out
";

/// Forgets session hashes under a handle. The key itself (and with it the
/// revocation generation) is kept until it expires: deleting it would let
/// an in-flight rotation read an unchanged (empty) generation.
///
/// KEYS: handle key. ARGV: hashes to forget.
/// Returns how many session hashes remain registered.
const FORGET: &str = r"
for _, k in ipairs(ARGV) do redis.call('HDEL', KEYS[1], k) end
local n = redis.call('HLEN', KEYS[1])
if redis.call('HEXISTS', KEYS[1], 'g') == 1 then n = n - 1 end
return n
";

/// Adds a handle to a user index, scored by its absolute deadline (never
/// lowered), prunes members whose deadline passed by the server's clock,
/// and keeps the index key alive as long as its latest member.
///
/// KEYS: user index key. ARGV: handle, absolute deadline ms.
const USER_ADD: &str = r"
redis.call('ZADD', KEYS[1], 'GT', ARGV[2], ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if top[2] then redis.call('PEXPIREAT', KEYS[1], top[2]) end
return 1
";

/// Admits a new session into a user index under the per-user session cap,
/// in one step on the one index key: prunes members whose absolute
/// deadline passed (server clock), counts the rest, then either refuses,
/// or removes the oldest (lowest score — the absolute deadline, so the
/// earliest created under one policy — then handle) to make room and adds
/// the new handle.
///
/// KEYS: user index key. ARGV: handle, absolute deadline ms, cap,
/// `evict` or `refuse`, then score and member pairs to add first: the
/// members of the user's index in the earlier layout (another key, in
/// another slot, read just before), so that sessions created before the
/// upgrade count under the cap.
/// Returns `{0}` refused (nothing changed but pruning and that copy);
/// `{1, evicted…}` admitted, with the handles removed to make room.
const USER_ADMIT: &str = r"
for n = 5, #ARGV - 1, 2 do redis.call('ZADD', KEYS[1], 'GT', ARGV[n], ARGV[n + 1]) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local n = redis.call('ZCARD', KEYS[1])
local max = tonumber(ARGV[3])
local out = {1}
if n >= max and ARGV[4] == 'refuse' then out = {0} end
if n >= max and ARGV[4] ~= 'refuse' then
  local evicted = redis.call('ZRANGE', KEYS[1], 0, n - max)
  for _, h in ipairs(evicted) do
    redis.call('ZREM', KEYS[1], h)
    out[#out + 1] = h
  end
end
if out[1] == 1 then redis.call('ZADD', KEYS[1], 'GT', ARGV[2], ARGV[1]) end
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if top[2] then redis.call('PEXPIREAT', KEYS[1], top[2]) end
return out
";

/// Prunes a user index by the server's clock and returns its handles.
///
/// KEYS: user index key.
const USER_LIST: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1)
";

/// Stores a refresh token in its family hash.
///
/// KEYS: family key. ARGV: token hash hex, record JSON (unused), used
/// value (`''` when unused), expire-at ms.
/// Returns 1 when stored, 0 when the hash is already in the family.
const REFRESH_INSERT: &str = r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'u:' .. ARGV[1], ARGV[3]) end
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIREAT', KEYS[1], ARGV[4])
else
  redis.call('PEXPIREAT', KEYS[1], ARGV[4], 'GT')
end
return 1
";

/// The compare-and-set of a refresh-token rotation, on the family hash
/// that holds both parent and child (one key, so atomic on a cluster too).
///
/// KEYS: family key. ARGV: parent hash hex, now ms, used value
/// (`at:child:sealed`), child hash hex, child record JSON, child expire-at
/// ms.
/// Returns `{0}` parent unknown or expired at `now`, `{1, used value}`
/// parent already used, `{2}` the child hash exists, `{3}` the parent
/// record does not decode, `{4}` rotated (parent marked, child stored).
const REFRESH_USE: &str = r"
local rec = redis.call('HGET', KEYS[1], ARGV[1])
if not rec then return {0} end
local ok, d = pcall(cjson.decode, rec)
if not ok or type(d) ~= 'table' or type(d['expires_at']) ~= 'number' then return {3} end
if tonumber(ARGV[2]) >= d['expires_at'] then return {0} end
local used = redis.call('HGET', KEYS[1], 'u:' .. ARGV[1])
if used then return {1, used} end
if redis.call('HEXISTS', KEYS[1], ARGV[4]) == 1 then return {2} end
redis.call('HSET', KEYS[1], 'u:' .. ARGV[1], ARGV[3], ARGV[4], ARGV[5])
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIREAT', KEYS[1], ARGV[6])
else
  redis.call('PEXPIREAT', KEYS[1], ARGV[6], 'GT')
end
return {4}
";

/// Deletes a refresh family and returns the hashes of its tokens.
///
/// KEYS: family key.
const REFRESH_DROP: &str = r"
local out = {}
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(f, 1, 2) ~= 'u:' then out[#out + 1] = f end
end
redis.call('DEL', KEYS[1])
return out
";

/// The scripts, with their SHA-1s computed once. Calls use `EVALSHA` and
/// load the script on `NOSCRIPT` (after a restart or failover).
pub(crate) struct Scripts {
    pub(crate) create: Script,
    pub(crate) update: Script,
    pub(crate) cas: Script,
    pub(crate) take: Script,
    pub(crate) delete_if: Script,
    pub(crate) claim: Script,
    pub(crate) pending: Script,
    pub(crate) extend: Script,
    pub(crate) finish: Script,
    pub(crate) revoke: Script,
    pub(crate) forget: Script,
    pub(crate) user_add: Script,
    pub(crate) user_list: Script,
    pub(crate) user_admit: Script,
    pub(crate) refresh_insert: Script,
    pub(crate) refresh_use: Script,
    pub(crate) refresh_drop: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Self {
            create: Script::from_lua(CREATE),
            update: Script::from_lua(UPDATE),
            cas: Script::from_lua(CAS),
            take: Script::from_lua(TAKE),
            delete_if: Script::from_lua(DELETE_IF),
            claim: Script::from_lua(CLAIM),
            pending: Script::from_lua(PENDING),
            extend: Script::from_lua(EXTEND),
            finish: Script::from_lua(FINISH),
            revoke: Script::from_lua(REVOKE),
            forget: Script::from_lua(FORGET),
            user_add: Script::from_lua(USER_ADD),
            user_list: Script::from_lua(USER_LIST),
            user_admit: Script::from_lua(USER_ADMIT),
            refresh_insert: Script::from_lua(REFRESH_INSERT),
            refresh_use: Script::from_lua(REFRESH_USE),
            refresh_drop: Script::from_lua(REFRESH_DROP),
        }
    }
}

impl std::fmt::Debug for Scripts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scripts")
    }
}
