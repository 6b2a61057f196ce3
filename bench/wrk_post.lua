-- wrk script: POST a JSON body to the URL; a fresh random seed per request when BENCH_SEEDED=1.
-- Env: BENCH_BODY (a format string with one %d for the seed, or a fixed body), BENCH_SEEDED.
-- At the end it prints one JSON line: requests/s, latency percentiles (ms), errors.
local body = os.getenv("BENCH_BODY") or '{"n": 1, "seed": %d}'
local seeded = os.getenv("BENCH_SEEDED") == "1"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  math.randomseed(os.time() + (id or 0) * 7919)
  if not seeded then wrk.body = body end
end

function request()
  if seeded then
    return wrk.format(nil, nil, nil, string.format(body, math.random(0, 2147483646)))
  end
  return wrk.format()
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
