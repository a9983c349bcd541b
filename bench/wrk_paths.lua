-- wrk script for bench/twisted_bench.py --http-load wrk: keep-alive GETs of the paths given after
-- `--` in turn, and a JSON line with what bench/http_load.py reports (requests/s, p50/p99 ms,
-- errors), so that the bench reads either generator the same way.
--
--     wrk -t1 -c8 -d4s -s bench/wrk_paths.lua http://127.0.0.1:PORT/ -- /a.bin /b.bin

local paths = { "/" }
local next_path = 0

function init(args)
  if #args > 0 then
    paths = args
  end
end

function request()
  next_path = next_path % #paths + 1
  return wrk.format("GET", paths[next_path])
end

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.status + e.timeout
  io.write(string.format(
    '{"requests": %d, "seconds": %.6f, "rps": %.3f, "p50_ms": %.3f, "p99_ms": %.3f, '
      .. '"errors": %d, "first_error": "%s"}\n',
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, errors,
    errors > 0 and string.format("connect %d read %d write %d status %d timeout %d",
      e.connect, e.read, e.write, e.status, e.timeout) or ""))
end
