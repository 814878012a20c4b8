-- signals_per_event_per_day.sql for SQLite, whose times are UTC text and booleans 0 and 1.
-- In the sqlite3 shell, set the account_id parameter first (.param set).
SELECT date(f.occurred_at) AS day,
       f.source, f.event_type, f.event_name,
       count(*) AS signals,
       sum(f.is_cold) AS cold
FROM signal_feed f
WHERE f.account_id = :account_id
  AND f.occurred_at >= datetime('now', '-30 days')
GROUP BY 1, 2, 3, 4
ORDER BY day DESC, signals DESC;
