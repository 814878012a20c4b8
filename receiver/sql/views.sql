-- The analyst views (docs/reference.md, "Analyst views"). `receiver init-db` recreates them on
-- every run, so this file is their one definition on Postgres. Column names are a promise; new
-- columns go at the end.
-- views_sqlite.sql defines them for SQLite, column for column: a column added here goes there
-- too (tests/functional/test_views_on_both_stores.py compares the two).

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
    COALESCE(s.payload -> 'properties', s.payload -> 'traits') AS properties,
    s.is_cold,
    s.message_id,
    s.linked_by_signal_id,
    s.payload,
    s.rule_id,
    s.mapped_fields
FROM signals s
LEFT JOIN leads l ON l.account_id = s.account_id AND l.id = s.lead_id;

-- The window of lead_summary.score_recent, in days. `receiver init-db` replaces this body with
-- the setting SCORE_WINDOW_DAYS (receiver/db.py); run on its own, this file sets the default.
CREATE OR REPLACE FUNCTION receiver_score_window_days() RETURNS double precision
LANGUAGE sql STABLE AS $$ SELECT 90::double precision $$;

-- score_recent: each signal's score times 1 - age / window (age in days by event time, now;
-- none past the window; a future event counts as now). receiver/scoring.py computes the same
-- for GET /admin/leads?order=score: change both together.
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
    round(COALESCE(agg.score_recent, 0)::numeric, 2) AS score_recent
FROM leads l
LEFT JOIN LATERAL (
    SELECT count(*) AS signal_count, sum(s.score) AS score, min(s.occurred_at) AS first_seen_at,
           max(s.occurred_at) AS last_seen_at,
           sum(COALESCE(s.score, 0) * greatest(0, 1 - greatest(0,
               extract(epoch FROM now() - s.occurred_at) / 86400) / receiver_score_window_days()))
               AS score_recent
    FROM signals s
    WHERE s.account_id = l.account_id AND s.lead_id = l.id
) agg ON true;

-- How much of each account sits in cold storage, and when the oldest of it expires.
DROP VIEW IF EXISTS cold_storage;
CREATE VIEW cold_storage AS
SELECT
    a.id AS account_id,
    a.cold_retention_days,
    count(s.id) AS cold_signals,
    min(s.received_at) AS oldest_received_at,
    min(s.received_at) + make_interval(days => a.cold_retention_days) AS next_expiry_at
FROM accounts a
LEFT JOIN signals s ON s.account_id = a.id AND s.is_cold
GROUP BY a.id, a.cold_retention_days;

-- Identifiers that linked to too many leads (a shared or spoofed id): they link nobody now.
DROP VIEW IF EXISTS blocked_identifiers;
CREATE VIEW blocked_identifiers AS
SELECT account_id, kind, value, jsonb_array_length(lead_history) AS leads_linked, blocked_at
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
