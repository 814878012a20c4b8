-- Leads with at least one signal this week (event time, ISO weeks starting Monday).
-- psql: -v account_id=1
SELECT l.lead_id, l.email, l.name, l.company, count(*) AS signals_this_week,
       max(f.occurred_at) AS last_seen_at
FROM lead_summary l
JOIN signal_feed f ON f.account_id = l.account_id AND f.lead_id = l.lead_id
WHERE l.account_id = :account_id
  AND f.occurred_at >= date_trunc('week', now())
GROUP BY l.lead_id, l.email, l.name, l.company
ORDER BY signals_this_week DESC, last_seen_at DESC;
