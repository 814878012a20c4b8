-- wrk script: Segment traffic shaped like a B2B website's, where events.lua sends the easy case.
--
--   wrk -s bench/mix.lua http://127.0.0.1:PORT -- NONCE SEED BATCH KIND PATHS
--
-- NONCE makes every messageId unique (one per wrk run), SEED names the visitors (one per
-- benchmark run, so the same 2,000 visitors come back round after round), BATCH is 0 for one
-- event object per request or N for a JSON array of N events, KIND is "mix" (60% track, 25%
-- page, 15% identify) or "identify" (identifies only), PATHS is one or more comma-separated
-- paths to POST to, one per account: visitor v belongs to account v mod #PATHS, every request
-- picks an account and all its events are of that account's visitors.
--
-- A visitor is fixed by its number: its anonymousId, browser, IP, time zone, the campaign it
-- came from, its email (the same in every identify) and, for two in five, a userId (carried by
-- its identifies, and by half its tracks and pages, as analytics.js does once a user logged
-- in). Events are about 1.1 KB, with Segment's webhook fields (context.page, userAgent,
-- campaign, properties, channel, the four timestamps); timestamps are the time of sending,
-- a batch's events spread over the two minutes before it, as a client's queue holds them.
-- done() prints one line "BENCH {json}" that bench/run.py reads, with the count of answers
-- that were not 2xx and their statuses.

local VISITORS = 2000
local SHARE_TRACK, SHARE_PAGE = 0.60, 0.25 -- the rest are identifies

local FIRST = { "Maria", "James", "Aisha", "Lukas", "Chen", "Sofia", "David", "Priya", "Omar",
  "Emma", "Kenji", "Laura", "Mateo", "Nina", "Samuel", "Yara", "Tom", "Ines", "Viktor", "Hana" }
local LAST = { "Garcia", "Smith", "Khan", "Muller", "Wang", "Rossi", "Cohen", "Patel", "Haddad",
  "Dubois", "Tanaka", "Silva", "Novak", "Berg", "Okafor", "Larsen", "Moreau", "Kowalski" }
local COMPANIES = { { "Northwind Logistics", "northwind-logistics.com" },
  { "Globex Corporation", "globex.io" }, { "Initech", "initech.com" },
  { "Umbrella Health", "umbrella-health.com" }, { "Stark Industrial", "stark-industrial.de" },
  { "Hooli Cloud", "hooli.cloud" }, { "Vandelay Imports", "vandelay.co.uk" },
  { "Wayne Analytics", "wayne-analytics.com" }, { "Soylent Foods", "soylent.fr" },
  { "Cyberdyne Systems", "cyberdyne.ai" }, { "Tyrell Biotech", "tyrell-bio.com" },
  { "Massive Dynamic", "massivedynamic.io" }, { "Acme Freight", "acmefreight.es" } }
local TITLES = { "VP Marketing", "Head of RevOps", "Growth Lead", "Marketing Operations Manager",
  "CTO", "Demand Generation Manager", "Sales Director", "Data Engineer" }
local AGENTS = {
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    .. "Chrome/131.0.0.0 Safari/537.36",
  "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    .. "Version/18.1 Safari/605.1.15",
  "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    .. "Chrome/130.0.0.0 Safari/537.36 Edg/130.0.0.0",
  "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    .. "Gecko) Version/18.1 Mobile/15E148 Safari/604.1" }
local ZONES = { "Europe/Berlin", "America/New_York", "Europe/London", "America/Los_Angeles",
  "Asia/Singapore", "Europe/Madrid", "America/Chicago" }
local LOCALES = { "de-DE", "en-US", "en-GB", "en-US", "en-SG", "es-ES", "en-US" }
-- name, source, medium, term, content: where the visitor first came from
local CAMPAIGNS = {
  { "q4-pipeline-2026", "google", "cpc", "revenue intelligence software", "rsa-variant-b" },
  { "revops-webinar-nov", "linkedin", "paid_social", "", "carousel-speakers" },
  { "newsletter-issue-48", "hs_email", "email", "", "cta-button-top" },
  { "g2-category-leads", "g2", "referral", "lead scoring", "listing" },
  { "brand-search", "bing", "cpc", "acme analytics", "exact-match" } }
local REFERRERS = { "https://www.google.com/", "https://www.linkedin.com/feed/",
  "https://news.ycombinator.com/", "https://www.bing.com/search?q=acme+analytics",
  "https://www.g2.com/categories/lead-scoring", "https://mail.google.com/" }
local PAGES = {
  { "Home", "/", "Acme Analytics | Revenue intelligence for B2B teams" },
  { "Pricing", "/pricing", "Pricing: plans for every revenue team | Acme Analytics" },
  { "Integrations", "/product/integrations", "Integrations: Salesforce, HubSpot, Segment" },
  { "Customers", "/customers", "Customer stories: how teams grow pipeline with Acme" },
  { "Blog Post", "/blog/how-to-score-b2b-leads", "How to score B2B leads without guesswork" },
  { "Docs", "/docs/getting-started/install-the-snippet", "Install the snippet | Acme Docs" },
  { "Book a Demo", "/demo", "Book a 30-minute demo | Acme Analytics" },
  { "Sign Up", "/signup", "Start your 14-day free trial | Acme Analytics" } }
-- event name and its properties (a JSON fragment)
local TRACKS = {
  { "Button Clicked", '"label":"Start free trial","location":"hero","variant":"b","index":1' },
  { "Form Submitted", '"form_id":"contact-sales","fields":6,"company_size":"51-200",'
    .. '"country":"DE","consent":true' },
  { "Demo Requested", '"source":"pricing","seats":25,"plan":"growth","preferred_slot":"am"' },
  { "Whitepaper Downloaded", '"asset":"state-of-revops-2026.pdf","gated":true,'
    .. '"category":"research"' },
  { "Video Played", '"video_id":"product-tour-2026","position":0,"total_length":184,'
    .. '"sound":true,"full_screen":false' },
  { "Trial Started", '"plan":"growth","trial_days":14,"seats":5,"billing":"monthly"' },
  { "Pricing Calculator Used", '"seats":40,"billing":"annual","estimate":12000,'
    .. '"currency":"EUR"' } }

local EVENT = '{"type":"%s",%s"anonymousId":"%s",%s"messageId":"%s","channel":"client",'
  .. '"context":{"campaign":{"name":"%s","source":"%s","medium":"%s","term":"%s",'
  .. '"content":"%s"},"ip":"%s","library":{"name":"analytics.js","version":"next-1.70.0"},'
  .. '"locale":"%s","page":{"path":"%s","referrer":"%s","search":"%s","title":"%s",'
  .. '"url":"https://www.acme-analytics.com%s"},"timezone":"%s","userAgent":"%s"},'
  .. '"integrations":{},"originalTimestamp":"%s","receivedAt":"%s","sentAt":"%s",'
  .. '"timestamp":"%s","version":2}'

local threads = {}
local counter = 0
local nonce, seed, batch, kind
local paths = {}
-- Globals, so done() can read them from every thread with thread:get.
non2xx = 0
statuses = {}

-- Runs in the main Lua state, once per thread: number the threads so ids never collide.
function setup(thread)
  threads[#threads + 1] = thread
  thread:set("thread_id", #threads)
end

function init(args)
  nonce, seed, batch, kind = args[1], args[2], tonumber(args[3]), args[4]
  for path in string.gmatch(args[5], "[^,]+") do
    paths[#paths + 1] = path
  end
  math.randomseed(os.time() + thread_id * 7919)
end

local function pick(list, n)
  return list[n % #list + 1]
end

local function iso(seconds, ms)
  return os.date("!%Y-%m-%dT%H:%M:%S", seconds) .. string.format(".%03dZ", ms)
end

local function anonymous_id(v)
  return string.format("%s-%04x-4%03x-a%03x-%012d", seed, v % 65536, v % 4096, v * 7 % 4096, v)
end

local function user_id(v)
  if v % 5 < 2 then
    return string.format("usr_%s_%06d", seed, v)
  end
end

local function identify_fields(v)
  local first, last = pick(FIRST, v), pick(LAST, v * 7)
  local company = pick(COMPANIES, v * 3)
  local email = string.format("%s.%s.%d@%s", first:lower(), last:lower(), v, company[2])
  return string.format(
    '"traits":{"email":"%s","name":"%s %s","firstName":"%s","lastName":"%s",'
      .. '"company":{"name":"%s"},"title":"%s","plan":"trial"},',
    email, first, last, first, last, company[1], pick(TITLES, v))
end

local function new_event(v, now)
  counter = counter + 1
  local r = math.random()
  local event_type, fields, page
  if kind == "identify" or r >= SHARE_TRACK + SHARE_PAGE then
    event_type, fields, page = "identify", identify_fields(v), pick(PAGES, counter)
  elseif r < SHARE_TRACK then
    local track = pick(TRACKS, counter + v)
    event_type, page = "track", pick(PAGES, counter)
    fields = string.format('"event":"%s","properties":{%s,"page_path":"%s"},',
      track[1], track[2], page[2])
  else
    event_type, page = "page", pick(PAGES, counter)
    fields = string.format(
      '"name":"%s","properties":{"path":"%s","referrer":"%s","title":"%s",'
        .. '"url":"https://www.acme-analytics.com%s"},',
      page[1], page[2], pick(REFERRERS, v), page[3], page[2])
  end
  local user = user_id(v)
  local user_field = ""
  if user and (event_type == "identify" or math.random() < 0.5) then
    user_field = string.format('"userId":"%s",', user)
  end
  local campaign = pick(CAMPAIGNS, v)
  local search = string.format("?utm_source=%s&utm_medium=%s&utm_campaign=%s",
    campaign[2], campaign[3], campaign[1])
  -- Sent a moment after it happened; a batch carries what was queued over two minutes.
  local happened = now - 1 - (batch > 0 and math.random(0, 120) or 0)
  local ms = math.random(0, 999)
  local sent = iso(now, math.random(0, 999))
  return string.format(EVENT, event_type, user_field, anonymous_id(v), fields,
    string.format("ajs-next-%s-%d-%d", nonce, thread_id, counter),
    campaign[1], campaign[2], campaign[3], campaign[4], campaign[5],
    string.format("198.51.%d.%d", v % 200, v % 250 + 1), pick(LOCALES, v), page[2],
    pick(REFERRERS, v), search, page[3], page[2], pick(ZONES, v), pick(AGENTS, v),
    iso(happened, ms), sent, sent, iso(happened, ms))
end

-- Visitor numbers of one account: v mod #paths is the account.
local function visitor_of(account)
  local per_account = math.floor(VISITORS / #paths)
  return (account - 1) + #paths * math.random(0, per_account - 1)
end

function request()
  local account = math.random(#paths)
  local now = os.time()
  local body
  if batch == 0 then
    body = new_event(visitor_of(account), now)
  else
    local events = {}
    for i = 1, batch do
      events[i] = new_event(visitor_of(account), now)
    end
    body = "[" .. table.concat(events, ",") .. "]"
  end
  return wrk.format("POST", paths[account], { ["Content-Type"] = "application/json" }, body)
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    statuses[status] = (statuses[status] or 0) + 1
  end
end

function done(summary, latency, requests)
  local errors = summary.errors
  local non2xx_total, by_status = 0, {}
  for _, thread in ipairs(threads) do
    non2xx_total = non2xx_total + thread:get("non2xx")
    for status, count in pairs(thread:get("statuses")) do
      by_status[status] = (by_status[status] or 0) + count
    end
  end
  local parts = {}
  for status, count in pairs(by_status) do
    parts[#parts + 1] = string.format('"%d":%d', status, count)
  end
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,'
      .. '"status_errors":%d,"socket_errors":%d,"non2xx":%d,"statuses":{%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    errors.status, errors.connect + errors.read + errors.write + errors.timeout,
    non2xx_total, table.concat(parts, ",")
  ))
end
