-- Leads by how hot they are now: score_recent (scores fading over SCORE_WINDOW_DAYS, by event
-- time) in bands. The thresholds are a starting point: tune them to your own scores.
-- psql: -v account_id=1
SELECT lead_id, email, name, company, score, score_recent,
       CASE
           WHEN score_recent >= 70 THEN 'hot'
           WHEN score_recent >= 30 THEN 'warm'
           WHEN score_recent > 0 THEN 'cooling'
           ELSE 'cold'
       END AS band
FROM lead_summary
WHERE account_id = :account_id
ORDER BY score_recent DESC, last_seen_at DESC;
