-- POSTs a ~1 KB chat completion with a bearer key (non-streamed; set STREAM=1 for SSE).
local stream = os.getenv("STREAM") == "1"
local key = os.getenv("KEY") or "tg-demo-key"
local filler = string.rep("lorem ipsum dolor sit amet ", 32)
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. key
wrk.body = '{"model":"gpt-4o-mini","stream":' .. tostring(stream) ..
  ',"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"' ..
  filler .. ' #mock chunks=' .. (os.getenv("CHUNKS") or "8") .. '"}],"temperature":0.2,"max_tokens":64}'
