-- Signals per event name per day (event time, UTC) over the last 30 days, cold ones included.
-- psql: -v account_id=1
SELECT date_trunc('day', f.occurred_at AT TIME ZONE 'UTC') AS day,
       f.source, f.event_type, f.event_name,
       count(*) AS signals,
       count(*) FILTER (WHERE f.is_cold) AS cold
FROM signal_feed f
WHERE f.account_id = :account_id
  AND f.occurred_at >= now() - interval '30 days'
GROUP BY 1, 2, 3, 4
ORDER BY day DESC, signals DESC;
