-- wrk script for bench/healthz.py: prints one line "BENCH_JSON {...}" when the run is done.
--
-- Always: requests, duration, socket errors, non-2xx/3xx count and latency percentiles (us).
-- With WRK_TIMELINE=1 (the soak) also every status code's count and, for each response that
-- is not a 200, its wall-clock time in 50 ms buckets ("<status>:<bucket>" -> count), so the
-- script can line up 503s with the moments it stopped and restarted a dependency.

local timeline = os.getenv("WRK_TIMELINE") == "1"
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

if timeline then
  local ffi = require("ffi")
  ffi.cdef([[
    typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
    int clock_gettime(int clk_id, bench_timespec *tp);
  ]])
  local ts = ffi.new("bench_timespec")
  local CLOCK_REALTIME = 0

  local function bucket()
    ffi.C.clock_gettime(CLOCK_REALTIME, ts)
    return math.floor((tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) / 1e9) * 20)
  end

  function init(args)
    statuses = {}
    buckets = {}
  end

  function response(status, headers, body)
    statuses[status] = (statuses[status] or 0) + 1
    if status ~= 200 then
      local key = status .. ":" .. bucket()
      buckets[key] = (buckets[key] or 0) + 1
    end
  end
end

local function merge(into, from)
  for key, value in pairs(from or {}) do
    into[key] = (into[key] or 0) + value
  end
end

local function encode(map)
  local parts = {}
  for key, value in pairs(map) do
    table.insert(parts, string.format('"%s": %d', tostring(key), value))
  end
  return "{" .. table.concat(parts, ", ") .. "}"
end

function done(summary, latency, requests)
  local statuses, buckets = {}, {}
  if timeline then
    for _, thread in ipairs(threads) do
      merge(statuses, thread:get("statuses"))
      merge(buckets, thread:get("buckets"))
    end
  end
  local errors = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d, "mean": %.1f}, ' ..
    '"statuses": %s, "buckets_50ms": %s}\n',
    summary.requests, summary.duration, summary.bytes,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    encode(statuses), encode(buckets)))
end
