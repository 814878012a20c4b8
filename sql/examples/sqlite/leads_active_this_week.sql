-- leads_active_this_week.sql for SQLite, whose times are UTC text: the week starts on the
-- Monday on or before today ('-6 days' then the next Monday, 'weekday 1').
-- In the sqlite3 shell, set the account_id parameter first (.param set).
SELECT l.lead_id, l.email, l.name, l.company, count(*) AS signals_this_week,
       max(f.occurred_at) AS last_seen_at
FROM lead_summary l
JOIN signal_feed f ON f.account_id = l.account_id AND f.lead_id = l.lead_id
WHERE l.account_id = :account_id
  AND f.occurred_at >= date('now', '-6 days', 'weekday 1')
GROUP BY l.lead_id, l.email, l.name, l.company
ORDER BY signals_this_week DESC, last_seen_at DESC;
