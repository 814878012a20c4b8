-- The analyst views of views.sql, for the embedded SQLite store: the same views with the same
-- columns in the same order (tests/functional/test_analyst_sql.py compares them), written
-- apart because SQLite lacks what the Postgres ones use:
--   * JSON is text read by json_extract, where Postgres has jsonb and `->`;
--   * no LATERAL join: lead_summary joins an aggregate per lead instead;
--   * times are text ('YYYY-MM-DD HH:MM:SS.ffffff', UTC) and days are added by datetime();
--   * booleans are 0 and 1.
-- `receiver init-db` recreates them on every run. A column added to a view in views.sql is
-- added here too, at the same place.

DROP VIEW IF EXISTS signal_feed;
CREATE VIEW signal_feed AS
SELECT
    s.id AS signal_id,
    s.account_id,
    s.lead_id,
    l.email,
    s.source,
    s.event_type,
    s.event_name,
    s.mapped_name,
    s.score,
    s.anonymous_id,
    s.user_id,
    s.occurred_at,
    s.received_at,
    COALESCE(json_extract(s.payload, '$.properties'), json_extract(s.payload, '$.traits'))
        AS properties,
    s.is_cold,
    s.message_id,
    s.linked_by_signal_id,
    s.payload,
    s.rule_id,
    s.mapped_fields
FROM signals s
LEFT JOIN leads l ON l.account_id = s.account_id AND l.id = s.lead_id;

-- score_recent: as views.sql's, age in days by julianday(). SQLite has no function to hold the
-- window: `receiver init-db` writes SCORE_WINDOW_DAYS in place of the 90.0 marked below
-- (receiver/db.py); run on its own, this file uses the default.
DROP VIEW IF EXISTS lead_summary;
CREATE VIEW lead_summary AS
SELECT
    l.account_id,
    l.id AS lead_id,
    l.email,
    l.name,
    l.company,
    l.title,
    COALESCE(agg.signal_count, 0) AS signal_count,
    COALESCE(agg.score, 0) AS score,
    COALESCE(agg.first_seen_at, l.first_seen_at) AS first_seen_at,
    COALESCE(agg.last_seen_at, l.last_seen_at) AS last_seen_at,
    round(COALESCE(agg.score_recent, 0), 2) AS score_recent
FROM leads l
LEFT JOIN (
    SELECT s.account_id, s.lead_id, count(*) AS signal_count, sum(s.score) AS score,
           min(s.occurred_at) AS first_seen_at, max(s.occurred_at) AS last_seen_at,
           sum(COALESCE(s.score, 0) * max(0, 1 - max(0,
               julianday('now') - julianday(s.occurred_at)) / 90.0 /* SCORE_WINDOW_DAYS */))
               AS score_recent
    FROM signals s
    WHERE s.lead_id IS NOT NULL
    GROUP BY s.account_id, s.lead_id
) agg ON agg.account_id = l.account_id AND agg.lead_id = l.id;

-- How much of each account sits in cold storage, and when the oldest of it expires. datetime()
-- drops the fraction of a second: it is put back, so the time reads as every stored one.
DROP VIEW IF EXISTS cold_storage;
CREATE VIEW cold_storage AS
SELECT
    a.id AS account_id,
    a.cold_retention_days,
    count(s.id) AS cold_signals,
    min(s.received_at) AS oldest_received_at,
    datetime(min(s.received_at), '+' || a.cold_retention_days || ' days')
        || substr(min(s.received_at), 20) AS next_expiry_at
FROM accounts a
LEFT JOIN signals s ON s.account_id = a.id AND s.is_cold
GROUP BY a.id, a.cold_retention_days;

-- Identifiers that linked to too many leads (a shared or spoofed id): they link nobody now.
DROP VIEW IF EXISTS blocked_identifiers;
CREATE VIEW blocked_identifiers AS
SELECT account_id, kind, value, json_array_length(lead_history) AS leads_linked, blocked_at
FROM identities
WHERE blocked_at IS NOT NULL;

-- Identifiers an admin unlinked from a lead (POST /admin/leads/<id>/unlink): they never join it
-- again.
DROP VIEW IF EXISTS unlinked_identifiers;
CREATE VIEW unlinked_identifiers AS
SELECT u.account_id, u.lead_id, l.email, u.kind, u.value, u.unlinked_at, u.signals_moved
FROM identity_unlinks u
LEFT JOIN leads l ON l.account_id = u.account_id AND l.id = u.lead_id;

-- One messageId that arrived with different content: both are stored, and shown here.
DROP VIEW IF EXISTS message_id_conflicts;
CREATE VIEW message_id_conflicts AS
SELECT account_id, message_id, count(*) AS versions, min(received_at) AS first_received_at,
       max(received_at) AS last_received_at
FROM signals
WHERE message_id IS NOT NULL
GROUP BY account_id, message_id
HAVING count(*) > 1;
