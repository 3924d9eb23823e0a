-- POSTs a ~1 KB chat completion with a bearer key (non-streamed; set STREAM=1 for SSE).
-- Env: STREAM=1, CHUNKS=N (the mock's content chunks, default 8), KEY (default tg-demo-key),
-- KEYS=N (default 1: more rotates the requests over the keys KEY-1 … KEY-N),
-- MOCK_EXTRA (more mock directives, e.g. "burst=1 pad=120").
local stream = os.getenv("STREAM") == "1"
local key = os.getenv("KEY") or "tg-demo-key"
local filler = string.rep("lorem ipsum dolor sit amet ", 32)
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. key
wrk.body = '{"model":"gpt-4o-mini","stream":' .. tostring(stream) ..
  ',"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"' ..
  filler .. ' #mock chunks=' .. (os.getenv("CHUNKS") or "8") .. ' ' .. (os.getenv("MOCK_EXTRA") or "") ..
  '"}],"temperature":0.2,"max_tokens":64}'

local keys = tonumber(os.getenv("KEYS") or "1")
if keys > 1 then
  local n = 0
  function request()
    n = n % keys + 1
    wrk.headers["Authorization"] = "Bearer " .. key .. "-" .. n
    return wrk.format()
  end
end

-- One machine-readable line after wrk's own summary (bench/run.sh parses it); latencies in µs.
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "TGBENCH requests=%d duration_us=%d p50=%d p75=%d p90=%d p99=%d max=%d " ..
    "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
