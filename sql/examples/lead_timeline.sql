-- A lead's timeline, newest first: every signal on the lead, and why it is there.
-- The same on SQLite (sql/examples/sqlite/ holds the queries that differ there).
-- psql: -v account_id=1 -v email="'ada@example.com'"
SELECT f.occurred_at, f.event_type, f.event_name, f.mapped_name, f.score, f.anonymous_id,
       f.user_id, f.properties, f.linked_by_signal_id
FROM signal_feed f
JOIN leads l ON l.account_id = f.account_id AND l.id = f.lead_id
WHERE f.account_id = :account_id AND l.email = :email
ORDER BY f.occurred_at DESC, f.signal_id DESC;
