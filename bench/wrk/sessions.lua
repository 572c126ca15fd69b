-- wrk script of scripts/bench.sh (issue 7).
--
-- Environment:
--   BENCH_METHOD    GET or POST
--   BENCH_PATH      request path
--   BENCH_SESSIONS  file with one session per line: "<cookie>\t<csrf token>"
--                   (the csrf part may be empty)
--
-- Requests cycle through the sessions round-robin, so with at least as many
-- sessions as connections, requests in flight at the same time belong to
-- different sessions ("a session per connection"); a file with one line
-- makes every request hit the same session. All requests are built once in
-- init(); request() only picks the next one.
--
-- done() prints one machine-readable line:
--   RESULT requests=.. duration_us=.. non2xx=.. errors=.. p50_us=.. p99_us=..

local requests = {}
local next_index = 0

function init(args)
  local method = os.getenv("BENCH_METHOD") or "GET"
  local path = os.getenv("BENCH_PATH") or "/"
  local file = os.getenv("BENCH_SESSIONS")
  for line in io.lines(file) do
    local cookie, csrf = line:match("^([^\t]*)\t?(.*)$")
    if cookie and cookie ~= "" then
      local headers = { ["Cookie"] = cookie }
      if csrf ~= "" then
        headers["X-CSRF-Token"] = csrf
      end
      requests[#requests + 1] = wrk.format(method, path, headers)
    end
  end
  if #requests == 0 then
    error("no sessions in " .. tostring(file))
  end
end

function request()
  next_index = next_index % #requests + 1
  return requests[next_index]
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d non2xx=%d errors=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
