-- post.lua - wrk script for the llm-proxy benchmarks.
--
-- Usage: wrk ... -s bench/post.lua URL -- KEY MODE MODEL
--   KEY    proxy key, sent as "Authorization: Bearer KEY" (nginx and the mock just ignore it)
--   MODE   "json" (non-streaming) or "stream" ("stream": true, the answer is SSE)
--   MODEL  the model (alias) named in the request body
--
-- Every response is validated: status 200 and a complete body ("choices" for JSON, the final
-- "data: [DONE]" for SSE). done() prints one machine-readable line starting with "LUA " that
-- bench/run.py parses: counts, error counters and exact latency percentiles in microseconds.

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   local key = args[1] or "sk-bench"
   mode = args[2] or "json"
   local model = args[3] or "bench-model"
   local stream = mode == "stream"
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
   wrk.headers["Authorization"] = "Bearer " .. key
   wrk.body = '{"model":"' .. model .. '","stream":' .. tostring(stream) ..
      ',"max_tokens":64,"messages":[{"role":"system","content":"You are a benchmark."},' ..
      '{"role":"user","content":"Say hello in one short sentence, please."}]}'
   non200 = 0
   badbody = 0
   first_status = 0
end

function response(status, headers, body)
   if status ~= 200 then
      non200 = non200 + 1
      if first_status == 0 then first_status = status end
   elseif mode == "stream" then
      if not (body and body:find("data: [DONE]", 1, true)) then badbody = badbody + 1 end
   elseif not (body and body:find('"choices"', 1, true)) then
      badbody = badbody + 1
   end
end

function done(summary, latency, requests)
   local n, b, fs = 0, 0, 0
   for _, t in ipairs(threads) do
      n = n + t:get("non200")
      b = b + t:get("badbody")
      local s = t:get("first_status")
      if s ~= 0 and fs == 0 then fs = s end
   end
   local e = summary.errors
   io.write(string.format(
      "LUA requests=%d duration_us=%d non200=%d badbody=%d first_bad_status=%d " ..
      "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d " ..
      "p50_us=%d p90_us=%d p99_us=%d p999_us=%d mean_us=%.1f max_us=%d\n",
      summary.requests, summary.duration, n, b, fs,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9), latency.mean, latency.max))
end
