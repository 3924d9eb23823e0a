#include "policies/state/shared_state.hpp"

#include "gateway/core/prom_text.hpp"

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <openssl/rand.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <functional>
#include <future>
#include <thread>

#include "gateway/state/redis_client.hpp"
#include "policies/budget/budget_policy.hpp"
#include "policies/rate_limit/rate_limit_policy.hpp"
#include "policies/usage/ledger.hpp"
#include "policies/usage/usage_policy.hpp"

namespace tollgate::policies {

namespace asio = boost::asio;
using state::redis_client;
using state::redis_reply;

namespace {

// The Redis keys of an API key (all under its hash tag, so one cluster slot):
//  r  the rate window: a hash of requests and tokens per 100-ms bucket (fields "<b>" and
//     "<b>t", b = floor(ms / 100)), their totals n and k, the oldest bucket still counted
//     o and the newest with a request z. A request counts from its admission until its
//     bucket's end + 60 s: never less than 60 s (limits hold over any 60-second window),
//     at most 100 ms more. A few dozen small fields whatever the rate, where a log of
//     every request would hold 60 s of them.
//  l  leases of the requests in flight (zset, score = lease end);
//  f  the requests in flight, one field each: rid → "tokens:bucket:nano" (estimated
//     tokens, their window bucket, estimated nano-dollars when the budget holds them;
//     bucket and nano may be empty); #rtok and #rnano, the budget's holds in all. (Before
//     2026-12 the hash 'h', with three fields per request; a different name, so that
//     instances of both versions never misread each other's records: the old one expires
//     by itself.);
//  b  the budget's spend in its period; s  recently settled rids; q  the highest settle
//     sequence counted per instance, and #touch (the last admission, at most 1/s).
// Shared by the scripts: integer formatting (Lua 5.1 prints big numbers as 1e+15, which
// HINCRBY refuses) and Redis's clock.
constexpr const char* lua_common = R"LUA(
local function I(x) return string.format('%d', x) end
-- A request in flight's record in f: estimated tokens, window bucket, nano-dollars.
local function F(v)
  local e, b, n = string.match(v, '^(%d+):(%d*):(%d*)$')
  return tonumber(e) or 0, tonumber(b), tonumber(n)
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local W, B = 60000, 100
)LUA";

// KEYS: r l b f s q. ARGV: 1 lease ms, 2 rpm, 3 tpm, 4 concurrency (-1 = none), 5 budget
// part (0/1), 6 token cap, 7 nano-dollar cap (-1 = none), 8 period start ms, 9 seed tokens,
// 10 seed nano (-1 = none given), 11 period kind, 12 instance, 13 whether the seed's
// ledger is shared by every instance (1: PostgreSQL) or the seeding instance's own (0),
// 14 the instance's ended requests of the key whose settles are on their way ('rid tokens
// nano-dollars' joined by ','); then 3 per request, in arrival order: rid, estimated
// tokens, estimated nano-dollars. A batch: the requests of one key (same limits) that reached a
// worker together, decided one after the other as if each were alone, so that what the key's reads
// and writes cost is paid once per batch. A seed notes when and by whom it was made: settles of
// requests that ended before it are in the ledger it summed.
// Returns 8 numbers per request: code (1 admitted, 0 refused), why (1 rpm, 2 tpm,
// 3 concurrency, 4 budget tokens, 5 budget usd), wait ms, requests in window, tokens
// counted, ms until the window is empty, in flight, and whether the key has used half of
// its tpm, concurrency or budget (1: the request's settle should not linger); or {-1}
// alone when the budget needs a seed (nothing decided).
const std::string admit_lua = std::string(lua_common) + R"LUA(
local lease = tonumber(ARGV[1])
local rpm, tpm, conc = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local budget_on = ARGV[5] == '1'
local windowed = rpm >= 0 or tpm >= 0
-- A request whose lease ran out: its in-flight record and budget hold go (the window
-- keeps counting it: it was admitted).
local function drop_flight(id)
  local v = redis.call('HGET', KEYS[4], id)
  if not v then return end
  redis.call('HDEL', KEYS[4], id)
  local e, _, n = F(v)
  if n then
    redis.call('HINCRBY', KEYS[4], '#rtok', I(-e))
    redis.call('HINCRBY', KEYS[4], '#rnano', I(-n))
  end
end
-- Leases that ran out: their holders stopped renewing them (crashed, cut off). Unless
-- nobody could renew: holders renew every lease/3, so a key untouched for more than half
-- a lease while it had leases means Redis itself was away (stopped, unreachable for
-- every instance); then the holders get one more lease to renew before anything is
-- dropped, however long the outage was.
local touch = tonumber(redis.call('HGET', KEYS[6], '#touch') or '0')
local outage = now - touch > lease / 2
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
  if outage then
    redis.call('ZADD', KEYS[2], I(now + lease), id)
  else
    redis.call('ZREM', KEYS[2], id)
    drop_flight(id)
  end
end
-- The touch and the keys' expiry are refreshed at most once a second: under load that
-- saves writes on every admission (the keys live W + 2 leases past the last refresh).
local refresh = now - touch >= 1000
if refresh then redis.call('HSET', KEYS[6], '#touch', I(now)) end
-- The window: buckets that ended more than W ago leave it (usually none; one every
-- 100 ms under load; at most the 600 of a whole window).
local cur = math.floor(now / B)
local wv = {false, false, false, false, false, false}
if windowed then
  wv = redis.call('HMGET', KEYS[1], 'n', 'k', 'o', 'z', I(cur), I(cur) .. 't')
end
local wn, wk = tonumber(wv[1] or '0'), tonumber(wv[2] or '0')
local wo, wz = tonumber(wv[3] or '-1'), tonumber(wv[4] or '-1')
local cn, ck = tonumber(wv[5] or '0'), tonumber(wv[6] or '0')
local gone = math.floor((now - W) / B) - 1  -- buckets up to this one have left
local wdirty = false
if windowed and wo >= 0 and wo <= gone then
  wdirty = true
  if wz <= gone then
    redis.call('DEL', KEYS[1])
    wn, wk, wo, wz = 0, 0, -1, -1
  else
    local f = {}
    for b = wo, gone do
      f[#f + 1] = I(b)
      f[#f + 1] = I(b) .. 't'
    end
    local v = redis.call('HMGET', KEYS[1], unpack(f))
    for i = 1, #v, 2 do
      wn = wn - tonumber(v[i] or '0')
      wk = wk - tonumber(v[i + 1] or '0')
    end
    redis.call('HDEL', KEYS[1], unpack(f))
    wo = gone + 1
  end
end
local requests, tokens = math.max(wn, 0), math.max(wk, 0)
local keep = I(W + 2 * lease)
-- Nothing admitted: what the expiry removed is written back, and a window that still
-- counts requests keeps its expiry fresh (a key refused for minutes must not lose it).
local function save_window()
  if wo < 0 then return end
  if wdirty then redis.call('HSET', KEYS[1], 'n', I(wn), 'k', I(wk), 'o', I(wo)) end
  if refresh or wdirty then redis.call('PEXPIRE', KEYS[1], keep) end
end
local inflight = redis.call('ZCARD', KEYS[2])
-- The instance's requests of this key that have ended but whose settles are still on
-- their way (ARGV[14]: 'rid tokens nano-dollars' joined by ','): not in flight any more,
-- though their leases are in l, and their real figures stand for their estimates, which
-- the window and the budget's holds still count, until the settle arrives. A client that
-- sends its next request as soon as the last one ended is decided on what it used, not on
-- what was reserved for it. Nothing is written from them here: the settle does that.
local tok_adj, use_tok_adj, use_nano_adj = 0, 0, 0
local adjusted = false
-- Read only when a check would refuse without them (far from its caps a key pays nothing).
local function adjust()
  adjusted = true
  if ARGV[14] == '' then return end
  local ids, used = {}, {}
  for id, t, n in string.gmatch(ARGV[14], '([^ ,]+) (%d+) (%d+)') do
    ids[#ids + 1] = id
    used[#used + 1] = {tonumber(t), tonumber(n)}
  end
  if #ids == 0 then return end
  -- Their records in f (kept with their leases in l: both go together) in one read.
  local hv = redis.call('HMGET', KEYS[4], unpack(ids))
  for k = 1, #ids do
    if hv[k] then
      if conc > 0 then inflight = inflight - 1 end
      local est, bk, nano = F(hv[k])
      if bk and wo >= 0 and bk >= wo then tok_adj = tok_adj + used[k][1] - est end
      if nano then
        use_tok_adj = use_tok_adj + used[k][1] - est
        use_nano_adj = use_nano_adj + used[k][2] - nano
      end
    end
  end
end
-- The ms until `amount` requests (suffix '') or tokens ('t') have left the window:
-- the buckets from the oldest (at most 602 of them; only when refusing, read once per
-- batch). The current bucket's count is this batch's (cn, ck): not written yet.
local counted = {}
local function wait_for(amount, suffix)
  if wo < 0 or wz < wo then return 0 end
  local c = counted[suffix]
  if not c or c.z ~= wz then
    local f = {}
    for b = wo, wz do f[#f + 1] = I(b) .. suffix end
    c = {z = wz, v = redis.call('HMGET', KEYS[1], unpack(f))}
    counted[suffix] = c
  end
  local v = c.v
  if wz == cur then v[#v] = suffix == '' and cn or ck end
  local freed = 0
  for i = 1, #v do
    freed = freed + tonumber(v[i] or '0')
    if freed >= amount then return math.max(0, (wo + i) * B + W - now) end
  end
  return math.max(0, (wz + 1) * B + W - now)
end
-- The budget: its spend and the holds of the requests in flight, read once, when the
-- first request of the batch passes the rate checks. False: it needs a seed.
local use_tok, use_nano, held_tok, held_nano = 0, 0, 0, 0
local cap_tok, cap_nano = tonumber(ARGV[6]), tonumber(ARGV[7])
local budget_read = false
local function read_budget()
  budget_read = true
  local pstart = tonumber(ARGV[8])
  local b = redis.call('HMGET', KEYS[3], 'start', 'tok', 'nano', 'per')
  local held = redis.call('HMGET', KEYS[4], '#rtok', '#rnano')
  held_tok, held_nano = tonumber(held[1] or '0'), tonumber(held[2] or '0')
  if not b[1] or b[4] ~= ARGV[11] then
    if tonumber(ARGV[9]) < 0 then return false end
    -- Settles after Redis lost the key's data may have added spend since: keep the larger.
    local tok, nano = tonumber(ARGV[9]), tonumber(ARGV[10])
    if not b[1] then
      tok = math.max(tok, tonumber(b[2] or '0'))
      nano = math.max(nano, tonumber(b[3] or '0'))
    end
    redis.call('HSET', KEYS[3], 'start', ARGV[8], 'per', ARGV[11], 'tok', I(tok), 'nano', I(nano),
               'seeded', I(now), 'seeder', ARGV[12], 'shared', ARGV[13])
    b[2] = I(tok); b[3] = I(nano)
  elseif tonumber(b[1]) < pstart and now >= pstart then
    -- A new period, by Redis's clock (an instance whose clock runs ahead cannot end the
    -- period early for everyone); holds of requests still in flight carry over.
    redis.call('HSET', KEYS[3], 'start', ARGV[8], 'tok', '0', 'nano', '0')
    b[2] = '0'; b[3] = '0'
  end
  use_tok = tonumber(b[2] or '0') + held_tok
  use_nano = tonumber(b[3] or '0') + held_nano
  return true
end
local function over_budget()
  return (cap_tok >= 0 and use_tok + use_tok_adj >= cap_tok) or
         (cap_nano >= 0 and use_nano + use_nano_adj >= cap_nano)
end
local requests0, inflight0 = requests, inflight
local out, zargs, fargs = {}, {}, {}
local why, wait
local function refuse(w, r) if w > wait then wait = w; why = r end end
for j = 15, #ARGV, 3 do
  local rid, est = ARGV[j], tonumber(ARGV[j + 1])
  why, wait = 0, -1
  if rpm >= 0 then
    if rpm == 0 then refuse(W, 1)
    elseif requests >= rpm then refuse(wait_for(requests - rpm + 1, ''), 1) end
  end
  if tpm >= 0 then
    if tpm == 0 then refuse(W, 2)
    else
      if tokens + tok_adj >= tpm and not adjusted then adjust() end
      if tokens + tok_adj >= tpm then refuse(wait_for(tokens + tok_adj - tpm + 1, 't'), 2) end
    end
  end
  if conc >= 0 then
    if conc == 0 then refuse(W, 3)
    else
      if inflight >= conc and not adjusted then adjust() end
      if inflight >= conc then refuse(0, 3) end
    end
  end
  if budget_on and why == 0 then
    -- Nothing is written before the loop ends: a seed request changes nothing.
    if not budget_read and not read_budget() then
      save_window()
      return {-1}
    end
    if not adjusted and over_budget() then adjust() end
    if cap_tok >= 0 and use_tok + use_tok_adj >= cap_tok then why = 4
    elseif cap_nano >= 0 and use_nano + use_nano_adj >= cap_nano then why = 5 end
  end
  local n = #out
  if why ~= 0 then
    out[n + 1] = 0; out[n + 2] = why; out[n + 3] = wait; out[n + 4] = requests
    out[n + 5] = tokens; out[n + 6] = wz >= 0 and math.max(0, (wz + 1) * B + W - now) or 0
    out[n + 7] = inflight; out[n + 8] = 1
  else
    if windowed then
      if wo < 0 then wo = cur end
      wz, cn, ck = cur, cn + 1, ck + est
      requests, tokens = requests + 1, tokens + est
    end
    inflight = inflight + 1
    zargs[#zargs + 1] = I(now + lease)
    zargs[#zargs + 1] = rid
    fargs[#fargs + 1] = rid
    if budget_on then
      local nano = tonumber(ARGV[j + 2])
      use_tok, use_nano = use_tok + est, use_nano + nano
      held_tok, held_nano = held_tok + est, held_nano + nano
      fargs[#fargs + 1] = ARGV[j + 1] .. ':' .. I(cur) .. ':' .. ARGV[j + 2]
    else
      fargs[#fargs + 1] = ARGV[j + 1] .. ':' .. I(cur) .. ':'
    end
    -- The newest request is this one: the window is empty again its bucket's end + W
    -- from now.
    out[n + 1] = 1; out[n + 2] = 0; out[n + 3] = 0; out[n + 4] = requests
    out[n + 5] = tokens; out[n + 6] = (cur + 1) * B + W - now; out[n + 7] = inflight
    local near = (tpm > 0 and tokens * 2 >= tpm) or (conc > 0 and inflight * 2 >= conc) or
      (budget_on and ((cap_tok >= 0 and use_tok * 2 >= cap_tok) or
                      (cap_nano >= 0 and use_nano * 2 >= cap_nano)))
    out[n + 8] = near and 1 or 0
  end
end
if #zargs == 0 then
  save_window()
  return out
end
-- Admitted: every total was read above (this script runs alone), so each key is written
-- once for the whole batch. A key that did not exist yet gets its expiry at once.
if windowed then
  redis.call('HSET', KEYS[1], I(cur), I(cn), I(cur) .. 't', I(ck),
             'n', I(requests), 'k', I(tokens), 'o', I(wo), 'z', I(cur))
  if refresh or requests0 == 0 then redis.call('PEXPIRE', KEYS[1], keep) end
end
redis.call('ZADD', KEYS[2], unpack(zargs))
if refresh or inflight0 == 0 then redis.call('PEXPIRE', KEYS[2], keep) end
if budget_on then
  fargs[#fargs + 1] = '#rtok'
  fargs[#fargs + 1] = I(held_tok)
  fargs[#fargs + 1] = '#rnano'
  fargs[#fargs + 1] = I(held_nano)
end
redis.call('HSET', KEYS[4], unpack(fargs))
if refresh or inflight0 == 0 then redis.call('PEXPIRE', KEYS[4], keep) end
return out
)LUA";

// KEYS: r l b f s q. ARGV: 1 instance, 2 lease ms, 3 re-seed (1: the instance dropped
// settles of this key it could not keep), then 7 per settle: sequence, rid, tokens,
// nano-dollars, budget part (0/1), ms since the request ended, whether a renewal that
// named the request went unanswered (1: it may still run after this settle, so the rid
// goes into s, where a renewal finds it and does not bring the lease back; otherwise
// the instance sent no settle while a renewal of the key was on its way). An instance numbers its
// settles per key and sends them in order, one batch at a time; q remembers the highest
// sequence counted per instance, so a batch retried after its reply was lost counts
// nothing twice, however long the outage was. The spend is added whether or not the hold
// is still there (its lease may have run out while Redis was unreachable: the spend is
// real all the same); requests admitted by per-instance limits while Redis was down
// (fail_mode open) settle the same way. Not added: spend of a request that ended before
// the budget's period began, or before the budget was seeded from a ledger that holds
// its record (a shared ledger, or this instance's own): the seed counted it already (up
// to the ledger's commit lag, tens of milliseconds). A re-seed request deletes the spend,
// so that the next admission re-seeds it from the ledger of record. The window counts
// the real tokens instead of the estimate while the request's bucket is in it.
const std::string settle_lua = std::string(lua_common) + R"LUA(
local inst, lease = ARGV[1], tonumber(ARGV[2])
if ARGV[3] == '1' then redis.call('DEL', KEYS[3]) end
local hw = tonumber(redis.call('HGET', KEYS[6], inst) or '-1')
local b = redis.call('HMGET', KEYS[3], 'start', 'seeded', 'seeder', 'shared')
local bstart, seeded = tonumber(b[1] or '0'), tonumber(b[2] or '0')
local seed_has_it = b[4] == '1' or b[3] == inst
local top = hw
-- The batch's requests, read and written with one command per key where Redis allows.
local rids = {}
for i = 4, #ARGV, 7 do rids[#rids + 1] = ARGV[i + 1] end
redis.call('ZREM', KEYS[2], unpack(rids))
rids[#rids + 1] = '#rtok'
rids[#rids + 1] = '#rnano'
local hv = redis.call('HMGET', KEYS[4], unpack(rids))
rids[#rids] = nil
rids[#rids] = nil
local wo = tonumber(redis.call('HGET', KEYS[1], 'o') or '-1')
local rtok, rnano, any = 0, 0, false
local add_tok, add_nano = 0, 0
local bucket_delta, wdelta = {}, 0
local settled = {}
for n = 1, #rids do
  local i = 4 + (n - 1) * 7
  local rid = rids[n]
  if hv[n] then
    any = true
    local est, bk, nano = F(hv[n])
    -- The window: the real tokens for the estimate, while the bucket is counted.
    if bk and wo >= 0 and bk >= wo then
      local d = tonumber(ARGV[i + 2]) - est
      if d ~= 0 then
        bucket_delta[bk] = (bucket_delta[bk] or 0) + d
        wdelta = wdelta + d
      end
    end
    -- The budget's hold goes.
    if nano then
      rtok = rtok + est
      rnano = rnano + nano
    end
  end
  -- Settled: a renewal that may still come must not bring the lease back.
  if ARGV[i + 6] == '1' then
    settled[#settled + 1] = I(now)
    settled[#settled + 1] = rid
  end
  local seq = tonumber(ARGV[i])
  if seq > hw then
    local ended = now - tonumber(ARGV[i + 5])
    if ARGV[i + 4] == '1' and ended >= bstart and not (seed_has_it and ended < seeded) then
      add_tok = add_tok + tonumber(ARGV[i + 2])
      add_nano = add_nano + tonumber(ARGV[i + 3])
    end
    if seq > top then top = seq end
  end
end
if wdelta ~= 0 then
  for bk, d in pairs(bucket_delta) do
    if d ~= 0 then redis.call('HINCRBY', KEYS[1], I(bk) .. 't', I(d)) end
  end
  redis.call('HINCRBY', KEYS[1], 'k', I(wdelta))
end
if any then
  redis.call('HDEL', KEYS[4], unpack(rids))
  if rtok ~= 0 or rnano ~= 0 then
    redis.call('HSET', KEYS[4], '#rtok', I(tonumber(hv[#hv - 1] or '0') - rtok),
               '#rnano', I(tonumber(hv[#hv] or '0') - rnano))
  end
end
if add_tok ~= 0 or add_nano ~= 0 then
  redis.call('HINCRBY', KEYS[3], 'tok', I(add_tok))
  redis.call('HINCRBY', KEYS[3], 'nano', I(add_nano))
end
if #settled > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', I(now - 2 * lease))
  redis.call('ZADD', KEYS[5], unpack(settled))
  redis.call('PEXPIRE', KEYS[5], I(2 * lease + W))
end
redis.call('HSET', KEYS[6], inst, I(top), inst .. '#t', I(now))
-- Instances that have not settled for a week: forget them (one field pair per start).
if redis.call('HLEN', KEYS[6]) > 64 then
  local f = redis.call('HGETALL', KEYS[6])
  for j = 1, #f, 2 do
    local name = f[j]
    if string.sub(name, -2) == '#t' and tonumber(f[j + 1]) < now - 7 * 86400000 then
      redis.call('HDEL', KEYS[6], name, string.sub(name, 1, -3))
    end
  end
end
return 1
)LUA";

// KEYS: r l b f s q. ARGV: 1 rid, 2 lease ms. Gives back what an admission may have taken
// (its reply was lost): the lease, the window's count and tokens, the budget's hold.
const std::string release_lua = std::string(lua_common) + R"LUA(
local rid = ARGV[1]
redis.call('ZREM', KEYS[2], rid)
local v = redis.call('HGET', KEYS[4], rid)
if v then
  redis.call('HDEL', KEYS[4], rid)
  local est, bk, nano = F(v)
  if nano then
    redis.call('HINCRBY', KEYS[4], '#rtok', I(-est))
    redis.call('HINCRBY', KEYS[4], '#rnano', I(-nano))
  end
  if bk then
    local b = I(bk)
    local wv = redis.call('HMGET', KEYS[1], 'o', b)
    if wv[1] and wv[2] and bk >= tonumber(wv[1]) then
      redis.call('HINCRBY', KEYS[1], b, -1)
      redis.call('HINCRBY', KEYS[1], b .. 't', I(-est))
      redis.call('HINCRBY', KEYS[1], 'n', -1)
      redis.call('HINCRBY', KEYS[1], 'k', I(-est))
    end
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', I(now - 2 * tonumber(ARGV[2])))
redis.call('ZADD', KEYS[5], I(now), rid)
redis.call('PEXPIRE', KEYS[5], I(2 * tonumber(ARGV[2]) + W))
return 1
)LUA";

// KEYS: r l b f s q. ARGV: 1 lease ms, then 4 per request in flight: rid, tokens held,
// nano-dollars held, budget part (0/1). Extends the leases; a lease that is gone although
// its request still runs (dropped by another instance while this one could not reach
// Redis) is taken again, with its budget hold, unless the request was settled meanwhile.
const std::string renew_lua = std::string(lua_common) + R"LUA(
local lease = tonumber(ARGV[1])
local n = 0
for i = 2, #ARGV, 4 do
  local rid = ARGV[i]
  if redis.call('ZSCORE', KEYS[2], rid) then
    redis.call('ZADD', KEYS[2], I(now + lease), rid)
    n = n + 1
  elseif not redis.call('ZSCORE', KEYS[5], rid) then
    redis.call('ZADD', KEYS[2], I(now + lease), rid)
    if not redis.call('HGET', KEYS[4], rid) then
      if ARGV[i + 3] == '1' then
        redis.call('HSET', KEYS[4], rid, ARGV[i + 1] .. '::' .. ARGV[i + 2])
        redis.call('HINCRBY', KEYS[4], '#rtok', ARGV[i + 1])
        redis.call('HINCRBY', KEYS[4], '#rnano', ARGV[i + 2])
      else
        redis.call('HSET', KEYS[4], rid, ARGV[i + 1] .. '::')
      end
    end
    n = n + 1
  end
end
local keep = I(W + 2 * lease)
for _, k in ipairs({KEYS[1], KEYS[2], KEYS[4]}) do redis.call('PEXPIRE', k, keep) end
redis.call('HSET', KEYS[6], '#touch', I(now))
return n
)LUA";

const redis_client::script& script_at(int i) {
    static const redis_client::script scripts[] = {
        redis_client::script(admit_lua), redis_client::script(settle_lua),
        redis_client::script(release_lua), redis_client::script(renew_lua)};
    return scripts[i];
}
constexpr int admit_script = 0, settle_script = 1, release_script = 2, renew_script = 3;

// Token counts sent to Redis: a request's max_tokens may be any uint64, and Lua's numbers
// are doubles (exact to 2^53) while HINCRBY wants an int64. 10^15 tokens is no limit.
constexpr std::uint64_t max_token_arg = 1'000'000'000'000'000ULL;

std::string limit_arg(const std::optional<std::uint64_t>& v) {
    return v ? std::to_string(*v) : std::string("-1");
}

std::int64_t to_nano(double usd) {
    if (!(usd > 0)) return 0;
    const double n = std::ceil(usd * 1e9);
    return n > 9e15 ? static_cast<std::int64_t>(9e15) : static_cast<std::int64_t>(n);
}

const char* period_arg(budget_book::period p) {
    return p == budget_book::period::day     ? "day"
           : p == budget_book::period::month ? "month"
                                             : "total";
}

std::int64_t unix_now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

}  // namespace

shared_state::shared_state(const config::state_config& cfg, std::shared_ptr<ledger> seed_from)
    : cfg_(cfg), ledger_(std::move(seed_from)) {
    state::redis_options o;
    o.endpoint = state::parse_redis_url(cfg.redis_url);
    o.timeout = cfg.timeout;
    o.pool_size = cfg.pool_size;
    o.tls_ca_file = cfg.tls_ca_file;
    for (int i = 0; i < 4; ++i) o.preload.push_back(script_at(i).source);
    unsigned char r[8];
    if (RAND_bytes(r, sizeof r) != 1) throw std::runtime_error("state: no random bytes");
    static constexpr char hex[] = "0123456789abcdef";
    for (unsigned char c : r) {
        instance_ += hex[c >> 4];
        instance_ += hex[c & 15];
    }
    spdlog::info("state: redis {} (fail_mode {}, timeout {} ms, lease {} ms)",
                 o.endpoint.redacted(),
                 cfg.on_failure == config::fail_mode::closed ? "closed" : "open",
                 cfg.timeout.count(), cfg.lease.count());
    redis_ = std::make_unique<redis_client>(std::move(o));
    if (!redis_->wait_connected(
            std::max<std::chrono::milliseconds>(cfg.timeout, std::chrono::seconds(1))))
        spdlog::warn("state: redis not reachable yet; fail_mode {} applies until it is",
                     cfg.on_failure == config::fail_mode::closed ? "closed (503)"
                                                                 : "open (per-instance limits)");
    asio::co_spawn(redis_->executor(), renew_loop(), asio::detached);
}

void shared_state::start_drain() {
    if (stopping_.exchange(true)) return;
    drain_until_ = std::chrono::steady_clock::now() +
                   std::clamp<std::chrono::milliseconds>(4 * cfg_.timeout, std::chrono::seconds(1),
                                                         std::chrono::seconds(5));
    std::vector<std::string> waiting;
    {
        std::lock_guard lock(outbox_mu_);
        for (const auto& [id, box] : outbox_)
            if (!box.items.empty()) waiting.push_back(id);
        if (!waiting.empty())
            spdlog::info("state: sending {} settles to Redis before stopping", outbox_size_);
    }
    for (auto& id : waiting)
        asio::post(redis_->executor(), [this, id = std::move(id)] { flush_outbox(id); });
}

shared_state::~shared_state() {
    // Settles still in the outbox go to Redis first (at once, no lingering), until the
    // drain's deadline: an instance that stops must not take the key's spend with it.
    start_drain();
    {
        std::unique_lock lock(outbox_mu_);
        if (outbox_size_ > 0 &&
            !outbox_cv_.wait_until(lock, drain_until_, [this] { return outbox_size_ == 0; }))
            spdlog::warn(
                "state: {} settles did not reach Redis before shutdown (their spend is "
                "in the ledger)",
                outbox_size_);
    }
    redis_gone_ = true;
    // On the client's thread, where the loop runs: no race on renew_timer_.
    asio::post(redis_->executor(), [this] {
        if (renew_timer_) renew_timer_->cancel();
    });
    redis_->close();  // joins the client's thread: no callback of ours runs after this
    redis_.reset();
}

std::string shared_state::key(const std::string& id, char part) const {
    std::string k;
    k.reserve(cfg_.key_prefix.size() + id.size() + 4);
    k += cfg_.key_prefix;
    k += '{';
    k += id;
    k += "}:";
    k += part;
    return k;
}

std::vector<std::string> shared_state::keys_of(const std::string& id) const {
    // 'r': the window hash (before 2026-12 a sorted set under 'w', with 't' beside it);
    // 'f': the requests in flight (before 2026-12 'h', three fields per request). New
    // names, so that instances of both versions and keys left by the old one never meet
    // a key of the wrong type or layout: the old ones expire by themselves.
    return {key(id, 'r'), key(id, 'l'), key(id, 'b'), key(id, 'f'), key(id, 's'), key(id, 'q')};
}

void shared_state::track(const std::string& key_id, const std::string& rid, hold h) {
    std::lock_guard lock(live_mu_);
    live_[key_id].emplace(rid, h);
}

void shared_state::untrack(const std::string& key_id, const std::string& rid) {
    std::lock_guard lock(live_mu_);
    const auto it = live_.find(key_id);
    if (it == live_.end()) return;
    it->second.erase(rid);
    if (it->second.empty()) live_.erase(it);
}

// What a batch's script call said about one of its requests.
struct shared_state::admit_outcome {
    redis_reply::status how = redis_reply::status::unavailable;
    bool failed = false;  // a script error, an unexpected reply, or no ledger for a seed
    std::array<std::int64_t, 8> v{};
};

// Admissions of one key, with the same limits, that reached one worker together.
struct shared_state::admit_batch {
    std::string slot;  // in open_batches_
    std::string key_id;
    asio::any_io_executor worker;
    std::int64_t pstart = 0;
    std::vector<std::string> args;  // the 13 shared ARGV (14th added when sent), then 3 per request
    std::vector<asio::any_completion_handler<void(admit_outcome)>> waiters;
};

asio::awaitable<shared_state::result> shared_state::admit(request r) {
    result out;
    const std::string rid = instance_ + ':' + std::to_string(next_rid_.fetch_add(1));
    out.rid = rid;
    r.est_tokens = std::min(r.est_tokens, max_token_arg);
    const std::int64_t est_nano = r.budget ? to_nano(r.est_usd) : 0;
    std::vector<std::string> args;
    args.reserve(16);
    args.push_back(std::to_string(cfg_.lease.count()));
    args.push_back(r.rate ? limit_arg(r.rate->rpm) : "-1");
    args.push_back(r.rate ? limit_arg(r.rate->tpm) : "-1");
    args.push_back(r.rate ? limit_arg(r.rate->concurrency) : "-1");
    std::int64_t pstart = 0;
    if (r.budget) {
        pstart = budget_book::period_start_ms(r.budget->per, unix_now_ms());
        args.emplace_back("1");
        args.push_back(limit_arg(r.budget->tokens));
        args.push_back(r.budget->usd ? std::to_string(to_nano(*r.budget->usd)) : "-1");
        args.push_back(std::to_string(pstart));
        args.emplace_back("-1");
        args.emplace_back("-1");
        args.emplace_back(period_arg(r.budget->per));
    } else {
        for (const char* a : {"0", "-1", "-1", "0", "-1", "-1", "total"}) args.emplace_back(a);
    }
    args.push_back(instance_);
    args.emplace_back(ledger_ && ledger_->shared_by_instances() ? "1" : "0");

    // Into the open batch of this worker for this key and these limits, or a new one that
    // goes out once the worker has run what is ready now (the other requests that arrived
    // with this one join it). The period start is in the limits: a batch never spans two.
    const auto ex = co_await asio::this_coro::executor;
    std::string slot = r.key_id;
    slot += '\n';
    slot += std::to_string(std::hash<std::thread::id>{}(std::this_thread::get_id()));
    for (const auto& a : args) {
        slot += '\n';
        slot += a;
    }
    const admit_outcome o =
        co_await asio::async_initiate<const asio::use_awaitable_t<>&, void(admit_outcome)>(
            [&](auto handler) {
                std::shared_ptr<admit_batch> b;
                {
                    std::lock_guard lock(batch_mu_);
                    auto& open = open_batches_[slot];
                    if (!open) {
                        open = std::make_shared<admit_batch>();
                        open->slot = slot;
                        open->key_id = r.key_id;
                        open->worker = ex;
                        open->pstart = pstart;
                        open->args = std::move(args);
                        b = open;
                    }
                    auto& batch = *open;
                    batch.args.push_back(rid);
                    batch.args.push_back(std::to_string(r.est_tokens));
                    batch.args.push_back(std::to_string(est_nano));
                    batch.waiters.emplace_back(std::move(handler));
                    if (batch.waiters.size() >= max_admit_batch) open_batches_.erase(slot);
                }
                if (b)
                    asio::post(ex, [this, ex, b = std::move(b)] {
                        asio::co_spawn(ex, send_batch(b), asio::detached);
                    });
            },
            asio::use_awaitable);

    if (o.how == redis_reply::status::timeout || o.how == redis_reply::status::lost) {
        // The script may have run: give back whatever it may have reserved (release is
        // idempotent), or it would hold a slot until its lease and window ran out.
        (o.how == redis_reply::status::timeout ? timeouts_ : unavailable_)
            .fetch_add(1, std::memory_order_relaxed);
        send_with_retry(release_script, keys_of(r.key_id),
                        {rid, std::to_string(cfg_.lease.count())},
                        std::chrono::steady_clock::now() + cfg_.lease);
        co_return out;
    }
    if (o.how != redis_reply::status::ok) {
        unavailable_.fetch_add(1, std::memory_order_relaxed);
        co_return out;
    }
    if (o.failed) co_return out;  // counted by send_batch
    const auto& e = o.v;
    const auto code = e[0];
    const auto why = e[1];
    const auto requests = static_cast<std::uint64_t>(std::max<std::int64_t>(0, e[3]));
    const auto tokens = static_cast<std::uint64_t>(std::max<std::int64_t>(0, e[4]));
    const auto reset = std::chrono::milliseconds(std::max<std::int64_t>(0, e[5]));
    auto& d = out.rate;
    if (r.rate && r.rate->rpm) {
        d.limit_requests = *r.rate->rpm;
        d.remaining_requests = *r.rate->rpm > requests ? *r.rate->rpm - requests : 0;
        d.reset_requests = reset;
    }
    if (r.rate && r.rate->tpm) {
        d.limit_tokens = *r.rate->tpm;
        d.remaining_tokens = *r.rate->tpm > tokens ? *r.rate->tpm - tokens : 0;
        d.reset_tokens = reset;
    }
    if (code == 1) {
        admissions_.fetch_add(1, std::memory_order_relaxed);
        out.how = result::kind::admitted;
        d.admitted = true;
        out.rid = rid;
        out.near_cap = e[7] != 0;
        track(r.key_id, rid, hold{r.est_tokens, est_nano, r.budget.has_value()});
        co_return out;
    }
    refusals_.fetch_add(1, std::memory_order_relaxed);
    out.how = result::kind::refused;
    if (why >= 1 && why <= 3) {
        d.why = why == 1   ? limiter::decision::reason::rpm
                : why == 2 ? limiter::decision::reason::tpm
                           : limiter::decision::reason::concurrency;
        const auto wait = std::max<std::int64_t>(e[2], 1);
        d.retry_after =
            std::chrono::milliseconds(std::max<std::int64_t>(1, (wait + 999) / 1000) * 1000);
    } else {
        out.budget_why =
            why == 5 ? budget_book::decision::reason::usd : budget_book::decision::reason::tokens;
    }
    co_return out;
}

asio::awaitable<void> shared_state::send_batch(std::shared_ptr<admit_batch> b) {
    {
        std::lock_guard lock(batch_mu_);
        const auto it = open_batches_.find(b->slot);
        if (it != open_batches_.end() && it->second == b) open_batches_.erase(it);
    }
    admit_batches_.fetch_add(1, std::memory_order_relaxed);
    // ARGV[14]: this instance's requests of the key that ended and whose settles have not
    // been answered yet, with what they used.
    b->args.insert(b->args.begin() + 13, ended_requests(b->key_id));

    const std::size_t n = b->waiters.size();
    admit_outcome common;
    redis_reply rep;
    for (int round = 0; round < 2; ++round) {
        rep = co_await redis_->call_eval(script_at(admit_script), keys_of(b->key_id), b->args);
        common.how = rep.how;
        if (rep.how != redis_reply::status::ok) break;
        const auto& e = rep.value.elements;
        if (rep.value.is_error()) {
            script_errors_.fetch_add(n, std::memory_order_relaxed);
            spdlog::error("state: admission script failed: {}", rep.value.str.substr(0, 300));
            common.failed = true;
            break;
        }
        const bool seed = rep.value.type == state::resp_value::kind::array && e.size() == 1 &&
                          e[0].as_int().value_or(0) == -1;
        if (seed && round == 0) {
            // Redis holds no spend for this budget: seed it from the ledger of record.
            ledger::totals t;
            if (ledger_) {
                try {
                    t = ledger_->totals_since(b->key_id, b->pstart);
                } catch (const std::exception& ex) {
                    // Seeding 0 would hand out the whole budget again: undecided instead.
                    spdlog::warn("state: cannot read the ledger to seed key {}'s budget: {}",
                                 b->key_id, ex.what());
                    unavailable_.fetch_add(n, std::memory_order_relaxed);
                    common.failed = true;
                    break;
                }
            }
            seeds_.fetch_add(1, std::memory_order_relaxed);
            b->args[8] = std::to_string(t.tokens);
            b->args[9] = std::to_string(to_nano(t.usd));
            continue;
        }
        if (rep.value.type != state::resp_value::kind::array || e.size() != 8 * n) {
            script_errors_.fetch_add(n, std::memory_order_relaxed);
            spdlog::error("state: unexpected reply from the admission script");
            common.failed = true;
        }
        break;
    }
    for (std::size_t i = 0; i < n; ++i) {
        admit_outcome o = common;
        if (o.how == redis_reply::status::ok && !o.failed)
            for (std::size_t k = 0; k < 8; ++k)
                o.v[k] = rep.value.elements[8 * i + k].as_int().value_or(0);
        // Every waiter is a coroutine of the worker the batch belongs to.
        asio::post(b->worker, [h = std::move(b->waiters[i]), o]() mutable { std::move(h)(o); });
    }
}

void shared_state::send_with_retry(int script, std::vector<std::string> keys,
                                   std::vector<std::string> args,
                                   std::chrono::steady_clock::time_point give_up) {
    auto k = keys;
    auto a = args;
    redis_->eval(
        script_at(script), std::move(k), std::move(a),
        [this, script, keys = std::move(keys), args = std::move(args),
         give_up](redis_reply r) mutable {
            if (r.how == redis_reply::status::ok) {
                if (r.value.is_error())
                    spdlog::error("state: script failed: {}", r.value.str.substr(0, 300));
                return;
            }
            if (stopping_ || std::chrono::steady_clock::now() >= give_up) {
                releases_given_up_.fetch_add(1, std::memory_order_relaxed);
                return;
            }
            release_retries_.fetch_add(1, std::memory_order_relaxed);
            auto timer = std::make_shared<asio::steady_timer>(redis_->executor());
            timer->expires_after(std::chrono::milliseconds(250));
            timer->async_wait([this, timer, script, keys = std::move(keys), args = std::move(args),
                               give_up](boost::system::error_code ec) mutable {
                if (ec || stopping_) return;
                send_with_retry(script, std::move(keys), std::move(args), give_up);
            });
        });
}

std::string shared_state::ended_requests(const std::string& key_id) {
    std::string out;
    std::lock_guard lock(outbox_mu_);
    const auto it = outbox_.find(key_id);
    if (it == outbox_.end()) return out;
    // The newest: a long backlog (an outage) only leaves the decision stricter than it is.
    const auto& items = it->second.items;
    const std::size_t from =
        items.size() > max_ended_requests ? items.size() - max_ended_requests : 0;
    for (std::size_t i = from; i < items.size(); ++i) {
        if (!out.empty()) out += ',';
        out += items[i].rid;
        out += ' ';
        out += std::to_string(items[i].tokens);
        out += ' ';
        out += std::to_string(std::max<std::int64_t>(0, items[i].nano));
    }
    return out;
}

void shared_state::settle(const std::string& key_id, const std::string& rid, std::uint64_t tokens,
                          double usd, bool with_budget, bool urgent) {
    untrack(key_id, rid);
    next_step step = next_step::none;
    {
        std::lock_guard lock(outbox_mu_);
        key_outbox& box = outbox_[key_id];
        box.items.push_back(settle_item{box.next_seq++, rid, std::min(tokens, max_token_arg),
                                        to_nano(usd), with_budget,
                                        std::chrono::steady_clock::now()});
        ++outbox_size_;
        if (outbox_size_ > settle_backlog_limit && box.items.size() > box.sending + 1) {
            // Full: this key's oldest settle not on its way goes; its spend is in the ledger,
            // and the key's budget is re-seeded from there when Redis takes the next batch.
            box.unsure.erase(box.items[box.sending].rid);
            box.items.erase(box.items.begin() + static_cast<std::ptrdiff_t>(box.sending));
            --outbox_size_;
            box.dropped = true;
            settle_dropped_.fetch_add(1, std::memory_order_relaxed);
        }
        box.urgent = box.urgent || urgent;
        step = next_for(box);
    }
    take(step, key_id);
}

shared_state::next_step shared_state::next_for(key_outbox& box) {
    // A batch or a renewal on its way: its answer decides again.
    if (box.sending > 0 || box.renewing > 0 || box.items.empty()) return next_step::none;
    if (box.urgent || box.items.size() >= settle_batch || stopping_) return next_step::now;
    if (box.lingering) return next_step::none;
    box.lingering = true;
    return next_step::linger;
}

void shared_state::take(next_step step, const std::string& key_id) {
    if (redis_gone_) return;
    if (step == next_step::now) {
        asio::post(redis_->executor(), [this, key_id] { flush_outbox(key_id); });
    } else if (step == next_step::linger) {
        asio::post(redis_->executor(), [this, key_id] {
            auto timer = std::make_shared<asio::steady_timer>(redis_->executor(), settle_linger);
            timer->async_wait([this, timer, key_id](boost::system::error_code) {
                {
                    std::lock_guard lock(outbox_mu_);
                    outbox_[key_id].lingering = false;
                }
                flush_outbox(key_id);
            });
        });
    }
}

void shared_state::flush_outbox(const std::string& key_id) {
    if (redis_gone_) return;
    std::vector<std::string> args;
    {
        std::lock_guard lock(outbox_mu_);
        const auto it = outbox_.find(key_id);
        if (it == outbox_.end()) return;
        key_outbox& box = it->second;
        if (box.sending > 0 || box.items.empty()) return;  // a batch is on its way already
        // A renewal of this key is on its way: it may name requests settled since, so the
        // settles wait for its answer (milliseconds, every lease/3) rather than mark each
        // rid as settled in Redis for a renewal arriving after them.
        if (box.renewing > 0) return;
        box.sending = std::min<std::size_t>(box.items.size(), 500);
        if (box.sending == box.items.size()) box.urgent = false;
        args.reserve(3 + 7 * box.sending);
        args.push_back(instance_);
        args.push_back(std::to_string(cfg_.lease.count()));
        args.emplace_back(box.dropped ? "1" : "0");
        const auto now = std::chrono::steady_clock::now();
        for (std::size_t i = 0; i < box.sending; ++i) {
            settle_item& item = box.items[i];
            if (!box.unsure.empty() && box.unsure.erase(item.rid) > 0) item.unsure = true;
            args.push_back(std::to_string(item.seq));
            args.push_back(item.rid);
            args.push_back(std::to_string(item.tokens));
            args.push_back(std::to_string(item.nano));
            args.emplace_back(item.budget ? "1" : "0");
            args.push_back(std::to_string(
                std::chrono::duration_cast<std::chrono::milliseconds>(now - item.ended).count()));
            args.emplace_back(item.unsure ? "1" : "0");
        }
    }
    settles_sent_.fetch_add(1, std::memory_order_relaxed);
    redis_->eval(
        script_at(settle_script), keys_of(key_id), std::move(args), [this, key_id](redis_reply r) {
            if (r.how != redis_reply::status::ok) {
                // Unreachable, unanswered or cut off (it may have run: the
                // sequence numbers make the retry count nothing twice).
                retry_outbox(key_id);
                return;
            }
            if (r.value.is_error()) {
                // A script error will not heal by retrying; the spend stays in
                // the ledger and the key is re-seeded from it.
                spdlog::error("state: settle script failed: {}", r.value.str.substr(0, 300));
            }
            next_step step = next_step::none;
            {
                std::lock_guard lock(outbox_mu_);
                key_outbox& box = outbox_[key_id];
                const std::size_t n = std::min(box.sending, box.items.size());
                box.items.erase(box.items.begin(),
                                box.items.begin() + static_cast<std::ptrdiff_t>(n));
                outbox_size_ -= n;
                box.sending = 0;
                if (r.value.is_error()) {
                    box.dropped = true;
                    settle_dropped_.fetch_add(n, std::memory_order_relaxed);
                } else if (box.dropped) {
                    box.dropped = false;
                    reseeds_asked_.fetch_add(1, std::memory_order_relaxed);
                }
                step = next_for(box);
            }
            outbox_cv_.notify_all();
            take(step, key_id);
        });
}

void shared_state::retry_outbox(const std::string& key_id) {
    // Retried while the instance stops, too: its drain waits for them.
    settle_retries_.fetch_add(1, std::memory_order_relaxed);
    {
        std::lock_guard lock(outbox_mu_);
        outbox_[key_id].sending = 0;  // the same items (same sequence numbers) go again
    }
    outbox_cv_.notify_all();
    if (redis_gone_) return;
    auto timer = std::make_shared<asio::steady_timer>(redis_->executor());
    timer->expires_after(std::chrono::milliseconds(250));
    timer->async_wait([this, timer, key_id](boost::system::error_code ec) {
        if (ec || redis_gone_) return;
        flush_outbox(key_id);
    });
}

std::size_t shared_state::settle_backlog() const {
    std::lock_guard lock(outbox_mu_);
    return outbox_size_;
}

void shared_state::release(const std::string& key_id, const std::string& rid) {
    untrack(key_id, rid);
    {
        // The release marks the rid as settled in Redis by itself.
        std::lock_guard lock(outbox_mu_);
        const auto it = outbox_.find(key_id);
        if (it != outbox_.end()) it->second.unsure.erase(rid);
    }
    send_with_retry(release_script, keys_of(key_id), {rid, std::to_string(cfg_.lease.count())},
                    std::chrono::steady_clock::now() + cfg_.lease);
}

asio::awaitable<void> shared_state::renew_loop() {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    renew_timer_ = &timer;
    struct unset {
        asio::steady_timer*& p;
        ~unset() { p = nullptr; }
    } guard{renew_timer_};
    while (!stopping_) {
        timer.expires_after(cfg_.lease / 3);
        auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
        if (ec || stopping_) co_return;
        std::vector<std::pair<std::string, std::vector<std::pair<std::string, hold>>>> batch;
        {
            std::lock_guard lock(live_mu_);
            batch.reserve(live_.size());
            for (const auto& [id, rids] : live_)
                batch.emplace_back(
                    id, std::vector<std::pair<std::string, hold>>(rids.begin(), rids.end()));
        }
        // One script call per key (a script touches one hash slot), all pipelined.
        for (auto& [id, rids] : batch) {
            for (std::size_t i = 0; i < rids.size(); i += 256) {
                std::vector<std::string> args;
                args.push_back(std::to_string(cfg_.lease.count()));
                for (std::size_t j = i; j < std::min(rids.size(), i + 256); ++j) {
                    args.push_back(std::move(rids[j].first));
                    args.push_back(std::to_string(rids[j].second.tokens));
                    args.push_back(std::to_string(rids[j].second.nano));
                    args.emplace_back(rids[j].second.budget ? "1" : "0");
                }
                renewals_.fetch_add(1, std::memory_order_relaxed);
                {
                    std::lock_guard lock(outbox_mu_);
                    ++outbox_[id].renewing;
                }
                auto named = std::make_shared<std::vector<std::string>>();
                for (std::size_t j = 1; j < args.size(); j += 4) named->push_back(args[j]);
                redis_->eval(script_at(renew_script), keys_of(id), std::move(args),
                             [this, id, named](redis_reply r) {
                                 renewed(id, *named,
                                         r.how == redis_reply::status::timeout ||
                                             r.how == redis_reply::status::lost);
                             });
            }
        }
    }
}

void shared_state::renewed(const std::string& key_id, const std::vector<std::string>& rids,
                           bool unanswered) {
    next_step step = next_step::none;
    {
        std::lock_guard lock(outbox_mu_);
        key_outbox& box = outbox_[key_id];
        --box.renewing;
        // Unanswered, it may still run later, after the settles of these requests: those
        // settles mark them as settled in Redis. (Not sent: nothing can arrive late.)
        if (unanswered) box.unsure.insert(rids.begin(), rids.end());
        step = next_for(box);
    }
    take(step, key_id);
}

void shared_state::publish_keys_changed() {
    redis_->exec({"PUBLISH", cfg_.key_prefix + "keys", "changed"}, [](redis_reply) {});
}

namespace {

// KEYS: data version. ARGV: field, value, time ms, … Stores each value unless the hash
// holds a newer time for its field; moves the version when anything changed.
const redis_client::script& keys_put_script() {
    static const redis_client::script s(R"LUA(
local changed = 0
for i = 1, #ARGV, 3 do
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  local at = cur and tonumber(string.match(cur, '^%-?%d+')) or nil
  if not at or at < tonumber(ARGV[i + 2]) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    changed = changed + 1
  end
end
if changed > 0 then redis.call('INCR', KEYS[2]) end
return changed
)LUA");
    return s;
}

template <class Start>
redis_reply wait_for_reply(Start&& start, std::chrono::milliseconds limit) {
    auto p = std::make_shared<std::promise<redis_reply>>();
    auto f = p->get_future();
    start([p](redis_reply r) { p->set_value(std::move(r)); });
    if (f.wait_for(limit) != std::future_status::ready) return redis_reply{};
    return f.get();
}

class redis_key_mirror final : public key_mirror {
  public:
    explicit redis_key_mirror(std::weak_ptr<shared_state> st) : st_(std::move(st)) {}
    std::optional<std::int64_t> version() override {
        auto st = st_.lock();
        return st ? st->keys_version() : std::nullopt;
    }
    std::optional<std::vector<std::pair<std::string, std::string>>> load() override {
        auto st = st_.lock();
        return st ? st->keys_load() : std::nullopt;
    }
    bool put(const std::vector<entry>& entries) override {
        auto st = st_.lock();
        return st && st->keys_put(entries);
    }

  private:
    std::weak_ptr<shared_state> st_;
};

}  // namespace

std::shared_ptr<key_mirror> make_key_mirror(std::weak_ptr<shared_state> st) {
    return std::make_shared<redis_key_mirror>(std::move(st));
}

std::optional<std::int64_t> shared_state::keys_version() {
    const auto limit = 4 * cfg_.timeout + std::chrono::seconds(1);
    const redis_reply r = wait_for_reply(
        [&](auto done) {
            redis_->exec({"GET", cfg_.key_prefix + "{keys}:version"}, std::move(done));
        },
        limit);
    if (!r.ok()) return std::nullopt;
    if (r.value.type == state::resp_value::kind::nil) return 0;
    return r.value.as_int();
}

std::optional<std::vector<std::pair<std::string, std::string>>> shared_state::keys_load() {
    const auto limit = 4 * cfg_.timeout + std::chrono::seconds(1);
    const redis_reply r = wait_for_reply(
        [&](auto done) {
            redis_->exec({"HGETALL", cfg_.key_prefix + "{keys}:data"}, std::move(done));
        },
        limit);
    if (!r.ok() || r.value.type != state::resp_value::kind::array) return std::nullopt;
    std::vector<std::pair<std::string, std::string>> out;
    const auto& e = r.value.elements;
    for (std::size_t i = 0; i + 1 < e.size(); i += 2) out.emplace_back(e[i].str, e[i + 1].str);
    return out;
}

bool shared_state::keys_put(const std::vector<key_mirror::entry>& entries) {
    std::vector<std::string> args;
    args.reserve(3 * entries.size());
    for (const auto& en : entries) {
        args.push_back(en.field);
        args.push_back(en.value);
        args.push_back(std::to_string(en.at_ms));
    }
    const auto limit = 4 * cfg_.timeout + std::chrono::seconds(1);
    const redis_reply r = wait_for_reply(
        [&](auto done) {
            redis_->eval(keys_put_script(),
                         {cfg_.key_prefix + "{keys}:data", cfg_.key_prefix + "{keys}:version"},
                         std::move(args), std::move(done));
        },
        limit);
    if (!r.ok()) return false;
    if (r.value.as_int().value_or(0) > 0) publish_keys_changed();
    return true;
}

void shared_state::on_keys_changed(std::function<void()> cb) {
    {
        std::lock_guard lock(keys_cb_mu_);
        keys_changed_ = std::move(cb);
    }
    redis_->subscribe(cfg_.key_prefix + "keys", [this](std::string_view payload) {
        if (payload.empty())
            spdlog::debug("state: subscribed to key changes; re-reading the key store");
        else
            spdlog::debug("state: keys changed on an instance; re-reading the key store");
        std::function<void()> cb;
        {
            std::lock_guard lock(keys_cb_mu_);
            cb = keys_changed_;
        }
        if (cb) cb();
    });
}

bool shared_state::connected() const noexcept {
    return redis_->connected();
}

void shared_state::render_metrics(std::string& out) const {
    namespace prom = core::prom;
    using lv = std::pair<std::string_view, std::string_view>;
    // A counter family, one sample per (label, value, count).
    const auto counters =
        [&](std::string_view name, std::string_view help, std::string_view label,
            std::initializer_list<std::pair<std::string_view, std::uint64_t>> vs) {
            prom::family(out, name, "counter", help);
            for (const auto& [value, n] : vs) {
                if (label.empty())
                    prom::sample(out, name, {}, n);
                else
                    prom::sample(out, name, {lv{label, value}}, n);
            }
        };
    prom::single(out, "tollgate_state_up", "gauge",
                 "1 while a connection to the shared state store (Redis) is up.",
                 std::uint64_t{connected() ? 1u : 0u});
    counters("tollgate_state_admissions_total",
             "Admissions decided by the shared state store, by result.", "result",
             {{"admitted", admissions_.load()}, {"refused", refusals_.load()}});
    counters("tollgate_state_admission_batches_total",
             "Admission script calls: a worker's requests for one key that arrive together go "
             "in one call.",
             "", {{"", admit_batches_.load()}});
    counters("tollgate_state_errors_total",
             "Admissions the shared state store could not decide, by reason.", "reason",
             {{"unavailable", unavailable_.load()},
              {"timeout", timeouts_.load()},
              {"script", script_errors_.load()}});
    counters("tollgate_state_failures_handled_total",
             "Requests admitted by per-instance limits (fail_mode open) or refused with 503 "
             "(fail_mode closed) while the shared state store was unreachable.",
             "mode", {{"open", fallbacks_.load()}, {"closed", refused_503_.load()}});
    counters("tollgate_state_budget_seeds_total",
             "Budgets seeded into the shared state store from the ledger.", "",
             {{"", seeds_.load()}});
    counters("tollgate_state_lease_renewals_total", "Lease renewal calls for requests in flight.",
             "", {{"", renewals_.load()}});
    counters("tollgate_state_settles_total",
             "Settle batches sent to Redis, retried after a failure; settles dropped (the outbox "
             "was full, or a script error: the key's budget is then re-seeded from the ledger).",
             "result",
             {{"sent", settles_sent_.load()},
              {"retried", settle_retries_.load()},
              {"dropped", settle_dropped_.load()}});
    counters("tollgate_state_releases_total",
             "Releases of requests that never went upstream, retried, or given up after a lease "
             "(by then the hold has run out by itself).",
             "result",
             {{"retried", release_retries_.load()}, {"given_up", releases_given_up_.load()}});
    counters("tollgate_state_reseeds_asked_total",
             "Budgets whose settles the outbox dropped (it was full), deleted from Redis so that "
             "the next admission re-seeds them from the ledger.",
             "", {{"", reseeds_asked_.load()}});
    prom::single(out, "tollgate_state_settle_backlog", "gauge",
                 "Settles waiting for Redis (the outbox).", std::uint64_t{settle_backlog()});
    counters("tollgate_state_redis_reconnects_total", "Connections to Redis re-established.", "",
             {{"", redis_->reconnects()}});
    counters("tollgate_state_redis_commands_total", "Commands sent to Redis.", "",
             {{"", redis_->commands()}});
    counters("tollgate_state_redis_writes_total",
             "Writes to Redis sockets (commands / writes = how many a pipelined write carries).",
             "", {{"", redis_->writes()}});
    counters("tollgate_state_redis_failures_total",
             "Failed connection attempts and connections lost.", "", {{"", redis_->failures()}});
    counters("tollgate_state_redis_lanes_total",
             "Connections to Redis opened by worker threads for their own admissions (lanes).", "",
             {{"", redis_->lanes()}});
    counters("tollgate_state_redis_lane_commands_total",
             "Commands sent by a worker's own connection (lane), without a hop to the Redis "
             "client's thread.",
             "", {{"", redis_->lane_commands()}});
}

}  // namespace tollgate::policies
