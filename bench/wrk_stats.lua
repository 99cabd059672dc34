-- wrk script of the benchmark suite, used for dohost and workerd alike (so both sides pay
-- the same client cost). Based on ../shared/peers/workerd/stats.lua: prints one line
--   RESULT rps= p50_ms= p99_ms= max_ms= reqs= errors= non2xx=
-- Environment:
--   WRK_METHOD       GET or POST (default GET)
--   WRK_TOKEN        sends "Authorization: Bearer <token>" when set (dohost)
--   WRK_RANDOM_OBJS  N > 0: each request goes to WRK_PATH_PRE .. rand(0..N-1) .. WRK_PATH_POST
--                    (otherwise the URL's path, a request wrk builds once)
local method = os.getenv("WRK_METHOD") or "GET"
local token = os.getenv("WRK_TOKEN") or ""
local nobj = tonumber(os.getenv("WRK_RANDOM_OBJS") or "0")
local pre = os.getenv("WRK_PATH_PRE") or "/obj"
local post = os.getenv("WRK_PATH_POST") or "/incr"

wrk.method = method
if token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end
if method == "POST" then
  wrk.headers["Content-Length"] = "0"
end

if nobj > 0 then
  local seeded = false
  request = function()
    if not seeded then
      math.randomseed(os.time() + math.floor(os.clock() * 1e6)); seeded = true
    end
    return wrk.format(nil, pre .. math.random(0, nobj - 1) .. post)
  end
end

done = function(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "RESULT rps=%.1f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f reqs=%d errors=%d non2xx=%d\n",
    summary.requests / secs, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, summary.requests,
    e.connect + e.read + e.write + e.timeout, e.status))
end
