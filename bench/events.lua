-- wrk script: every request carries NEW Segment track events (a unique messageId and a
-- fresh anonymousId per event), else everything after the first request is a duplicate.
--
--   wrk -s bench/events.lua http://127.0.0.1:PORT -- NONCE PATH BATCH REDELIVER
--
-- NONCE makes ids unique across runs, PATH is where to POST, BATCH is 0 for one event
-- object per request or N for a JSON array of N events, REDELIVER (0..1) is the share of
-- requests that resend a body this thread already sent (Segment delivers at least once).
-- done() prints one line "BENCH {json}" that bench/run.py reads.

local HISTORY = 1000 -- bodies kept per thread for redelivery

local EVENT = '{"type":"track","event":"Page Viewed","anonymousId":"anon-%s",'
  .. '"messageId":"msg-%s","timestamp":"2024-05-01T12:00:00.000Z",'
  .. '"sentAt":"2024-05-01T12:00:01.000Z","properties":{"path":"/pricing",'
  .. '"title":"Pricing","plan":"growth","seq":%d},"context":{"ip":"203.0.113.7",'
  .. '"userAgent":"Mozilla/5.0 (X11; Linux x86_64) bench","library":{"name":"analytics.js",'
  .. '"version":"4.1.0"},"page":{"url":"https://example.com/pricing",'
  .. '"referrer":"https://www.google.com/"}},"integrations":{},"version":2}'

local threads = 0
local counter = 0
local sent = {}
local nonce, path, batch, redeliver

-- Runs in the main Lua state, once per thread: number the threads so ids never collide.
function setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end

function init(args)
  nonce, path = args[1], args[2]
  batch, redeliver = tonumber(args[3]), tonumber(args[4])
  math.randomseed(os.time() + thread_id * 7919)
end

local function new_event()
  counter = counter + 1
  local id = string.format("%s-%d-%d", nonce, thread_id, counter)
  return string.format(EVENT, id, id, counter)
end

local function new_body()
  if batch == 0 then
    return new_event()
  end
  local events = {}
  for i = 1, batch do
    events[i] = new_event()
  end
  return "[" .. table.concat(events, ",") .. "]"
end

local function remember(body)
  if #sent < HISTORY then
    sent[#sent + 1] = body
  else
    sent[math.random(HISTORY)] = body
  end
end

function request()
  local body
  if redeliver > 0 and #sent > 0 and math.random() < redeliver then
    body = sent[math.random(#sent)]
  else
    body = new_body()
    if redeliver > 0 then
      remember(body)
    end
  end
  return wrk.format("POST", path, { ["Content-Type"] = "application/json" }, body)
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,'
      .. '"status_errors":%d,"socket_errors":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    errors.status, errors.connect + errors.read + errors.write + errors.timeout
  ))
end
