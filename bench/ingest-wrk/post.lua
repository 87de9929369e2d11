-- POST /v1/events with ids unique per run, thread and request.
-- Env: KEY (API key), BATCH (events per request, default 1), RUN (id prefix).
local key = os.getenv("KEY")
local batch = tonumber(os.getenv("BATCH") or "1")
local run = os.getenv("RUN") or "r"
local threads = 0
local counter = 0

function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

local function event(id, n)
  return string.format(
    '{"id":"%s","type":"user.logged_in","account_id":"acct-%d","occurred_at":"2026-11-21T09:30:00Z","data":{}}',
    id, n % 200)
end

function request()
  counter = counter + 1
  local body
  if batch == 1 then
    body = event(string.format("%s-%d-%d", run, tid, counter), counter)
  else
    local parts = {}
    for i = 1, batch do
      parts[i] = event(string.format("%s-%d-%d-%d", run, tid, counter, i), counter * batch + i)
    end
    body = '{"events":[' .. table.concat(parts, ",") .. ']}'
  end
  return wrk.format("POST", "/v1/events",
    { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key }, body)
end

function done(summary, latency, requests)
  local codes = summary.errors
  io.write(string.format("RESULT requests=%d duration_s=%.2f req_per_s=%.0f p50_ms=%.1f p99_ms=%.1f non2xx=%d socket_errors=%d\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    codes.status, codes.connect + codes.read + codes.write + codes.timeout))
end
