-- wrk script shared by the benchmarks: GETs drawn at random (fixed seed) from a precomputed set,
-- so that both servers get the same mix and wrk spends as little as possible per request.
--   BENCH_PATH_FMT  path with one %d, e.g. /v1/segments/bench/%d.ts
--   BENCH_COUNT     how many indices (0 .. BENCH_COUNT-1)
--   BENCH_RANGE     0: whole objects; else the length of each Range (aligned slices of the object)
--   BENCH_SIZE      the object's size in bytes (for ranges)
--   BENCH_QUERIES   optional: query strings separated by spaces (e.g. one viewer token each); every
--                   request appends one drawn at random, as many viewers would send theirs
--   BENCH_DELAY_MS  optional: each connection waits this many ms after a response before its
--                   next request (wrk's delay(); its latency counts from the request's sending),
--                   so that the load stays below what the server can take: a latency then is
--                   the server's delay, not a queue behind the requests of the other connections
-- done() prints one line "WRK_RESULT key=value ..." that bench/lib.sh parses.
local fmt = os.getenv("BENCH_PATH_FMT") or "/%d"
local count = tonumber(os.getenv("BENCH_COUNT") or "1")
local range = tonumber(os.getenv("BENCH_RANGE") or "0")
local size = tonumber(os.getenv("BENCH_SIZE") or "0")
local queries = {}
for q in string.gmatch(os.getenv("BENCH_QUERIES") or "", "%S+") do
  queries[#queries + 1] = q
end
local reqs = {}

init = function(args)
  math.randomseed(20240601)
  for i = 0, count - 1 do
    local paths = {}
    if #queries == 0 then
      paths[1] = string.format(fmt, i)
    else
      for _, q in ipairs(queries) do
        paths[#paths + 1] = string.format(fmt, i) .. "?" .. q
      end
    end
    for _, path in ipairs(paths) do
      if range > 0 then
        for off = 0, size - range, range do
          reqs[#reqs + 1] = wrk.format("GET", path, { ["Range"] = string.format("bytes=%d-%d", off, off + range - 1) })
        end
      else
        reqs[#reqs + 1] = wrk.format("GET", path)
      end
    end
  end
end

local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
if delay_ms > 0 then
  delay = function()
    return delay_ms
  end
end

request = function()
  return reqs[math.random(#reqs)]
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_RESULT requests=%d bytes=%d duration_us=%d errors=%d connect=%d read=%d write=%d status=%d timeout=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.bytes, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
