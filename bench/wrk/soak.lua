-- Soak load: a mix of non-streamed and streamed chat completions, some of them asking the
-- mock upstream for a fault, each request picked at random. Counts answers by status and
-- prints them at the end for bench/soak.sh.
-- Env: KEY (default tg-demo-key), FAULT_PCT (share of requests with a fault, default 10).
local key = os.getenv("KEY") or "tg-demo-key"
local fault_pct = tonumber(os.getenv("FAULT_PCT") or "10")
local filler = string.rep("lorem ipsum dolor sit amet ", 16)

-- What a faulty request asks of the mock (see bench/mock_upstream/README.md).
local faults = {
  "status=503",        -- the upstream refuses: 502 after retries
  "status=500",
  "reset_after=3",     -- connection reset mid-answer
  "sse_error=2",       -- an error event inside a 200 stream
  "chunk_truncate=2",  -- truncated chunked encoding
  "head_delay_ms=50",  -- a slow head (not an error)
}

counts = {}  -- a global: done() reads each thread's through thread:get
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() + math.random(1, 100000))
  counts = {}
end

local function body()
  local stream = math.random() < 0.5
  local directive = "chunks=" .. math.random(4, 40)
  if math.random(1, 100) <= fault_pct then
    directive = directive .. " " .. faults[math.random(1, #faults)]
  end
  return '{"model":"gpt-4o-mini","stream":' .. tostring(stream) ..
    ',"messages":[{"role":"user","content":"' .. filler .. ' #mock ' .. directive ..
    '"}],"max_tokens":64}'
end

function request()
  return wrk.format("POST", "/v1/chat/completions",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key}, body())
end

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end

-- Per-thread counts travel through thread:get in done().
function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    local c = t:get("counts")
    if c then
      for k, v in pairs(c) do total[k] = (total[k] or 0) + v end
    end
  end
  local parts = {}
  for k, v in pairs(total) do table.insert(parts, "s" .. k .. "=" .. v) end
  table.sort(parts)
  local e = summary.errors
  io.write(string.format("TGSOAK requests=%d err_connect=%d err_read=%d err_write=%d err_timeout=%d %s\n",
    summary.requests, e.connect, e.read, e.write, e.timeout, table.concat(parts, " ")))
end
