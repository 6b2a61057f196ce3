-- wrk script: POST a freshly seeded JSON body to one of many paths, path k (from 1) drawn with probability
-- proportional to 1 / k^s (a Zipf law). Env: BENCH_PATHS (a file, one path per line), BENCH_ZIPF_S, BENCH_BODY (a
-- format string with one %d for the seed). At the end it prints one JSON line, as wrk_post.lua does.
local body = os.getenv("BENCH_BODY") or '{"n": 1, "seed": %d}'
local s = tonumber(os.getenv("BENCH_ZIPF_S") or "1.1")
local paths = {}
for line in io.lines(os.getenv("BENCH_PATHS")) do
  if #line > 0 then paths[#paths + 1] = line end
end
local cdf = {}
local total = 0
for k = 1, #paths do
  total = total + 1 / k ^ s
  cdf[k] = total
end
for k = 1, #paths do cdf[k] = cdf[k] / total end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  math.randomseed(os.time() + (id or 0) * 7919)
end

local function pick()
  local u = math.random()
  local lo, hi = 1, #cdf
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return paths[lo]
end

function request()
  return wrk.format(nil, pick(), nil, string.format(body, math.random(0, 2147483646)))
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_s": %.3f, "rps": %.1f, "p50_ms": %.3f, "p90_ms": %.3f, "p99_ms": %.3f, ' ..
    '"max_ms": %.3f, "errors_status": %d, "errors_connect": %d, "errors_read": %d, "errors_write": %d, ' ..
    '"errors_timeout": %d, "bytes": %d}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, e.status, e.connect, e.read, e.write, e.timeout, summary.bytes))
end
