-- The functions every body is stored with on Postgres, called by receiver/store.py (which
-- holds SQLite's equivalent beside them) and ingest/plain.py. `receiver init-db` recreates
-- them on every run, so this file is their one definition, always that of the code beside it.
--
-- The caller has taken the body's locks and placed every event (identity/replay.py): these
-- functions only write. Plan each statement once per connection: custom plans cost more to
-- make than to run (0.8 ms against 0.2 ms on a store of 1,000,000 signals), and the keys they
-- look up are unique whatever the parameters.

-- receiver_store_plain: the one-statement lane of earlier releases, which placed events in SQL.
DROP FUNCTION IF EXISTS receiver_store_plain;
DROP FUNCTION IF EXISTS receiver_store_placed;
DROP FUNCTION IF EXISTS receiver_settle;
DROP FUNCTION IF EXISTS receiver_settle_columns;
DROP FUNCTION IF EXISTS receiver_insert_signals;

-- Insert the placed signals of a body, skipping those stored already; the new ones, with
-- what receiver_settle needs of them. A row's id is the one given (identity resolution takes
-- ids first, to link signals to the events that moved them), else the next. plpgsql, not SQL:
-- a SQL function that is not inlined is parsed and planned on every call (0.25 ms of a plain
-- track's 1.4 ms of backend CPU); plpgsql keeps its plan for the connection.
CREATE FUNCTION receiver_insert_signals(p_account_id bigint, p_rows jsonb, p_now timestamptz)
RETURNS TABLE (id bigint, content_hash bytea, lead_id bigint, is_cold boolean,
               occurred_at timestamptz, rule_id bigint, source varchar, event_type varchar,
               event_name varchar, payload jsonb)
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_generic_plan
AS $fn$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    INSERT INTO signals AS s (account_id, id, source, event_type, event_name, anonymous_id,
                              user_id, message_id, content_hash, payload, occurred_at,
                              received_at, lead_id, is_cold, linked_by_signal_id, linked_at,
                              rule_id, mapped_name, score, mapped_fields)
    SELECT p_account_id, coalesce(b.id, nextval('signals_id_seq'::regclass)), b.source,
           b.event_type, b.event_name, b.anonymous_id, b.user_id, b.message_id,
           decode(b.content_hash, 'hex'), b.payload, b.occurred_at, p_now, b.lead_id, b.is_cold,
           b.linked_by_signal_id, CASE WHEN b.linked_by_signal_id IS NOT NULL THEN p_now END,
           b.rule_id, b.mapped_name, b.score, b.mapped_fields
    FROM jsonb_to_recordset(p_rows)
      AS b (id bigint, source varchar, event_type varchar, event_name varchar,
            anonymous_id varchar, user_id varchar, message_id varchar, content_hash text,
            payload jsonb, occurred_at timestamptz, lead_id bigint, is_cold boolean,
            linked_by_signal_id bigint, rule_id bigint, mapped_name varchar, score integer,
            mapped_fields jsonb)
    ON CONFLICT (account_id, content_hash) DO NOTHING
    RETURNING s.id, s.content_hash, s.lead_id, s.is_cold, s.occurred_at, s.rule_id, s.source,
              s.event_type, s.event_name, s.payload;
END
$fn$;

-- Settle a body's new signals, given as columns (p_ids, p_lead_ids, ...: one element per
-- signal, with its final lead_id; p_payloads may be null but where a signal may become a
-- queue group's sample) and the spans of leads that older signals moved onto (p_spans: rows
-- of lead_id, earliest, latest): claim the month's usage, then widen the leads' first and last
-- seen, then count the unmapped ones into the Signal Queue. In that order, the lock order of
-- identity/locks.py: writers of an account line up on the counter's row and never wait on each
-- other's leads or groups in a circle. Returns false, having written nothing, when the new
-- signals do not all fit in the month's limit.
CREATE FUNCTION receiver_settle_columns(p_account_id bigint, p_period_start date,
                                        p_limit bigint, p_ids bigint[], p_lead_ids bigint[],
                                        p_occurred_at timestamptz[], p_rule_ids bigint[],
                                        p_sources varchar[], p_event_types varchar[],
                                        p_event_names varchar[], p_payloads jsonb[],
                                        p_spans jsonb, p_now timestamptz)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_generic_plan
AS $fn$
DECLARE
    v_count bigint := coalesce(cardinality(p_ids), 0);
    v_leads bigint[];
    v_earliest timestamptz[];
    v_latest timestamptz[];
BEGIN
    IF v_count > 0 THEN
        IF v_count > p_limit THEN
            RETURN false;
        END IF;
        INSERT INTO usage_counters AS u (account_id, period_start, used)
        VALUES (p_account_id, p_period_start, v_count)
        ON CONFLICT (account_id, period_start) DO UPDATE SET used = u.used + excluded.used
        WHERE u.used + excluded.used <= p_limit;
        IF NOT FOUND THEN
            RETURN false;
        END IF;
    END IF;
    -- The leads are looked up by their ids (= ANY, in id order): joined to the spans, a
    -- generic plan guesses a hundred rows from each function scan and hashes every lead of
    -- the account instead, for a single event too.
    SELECT array_agg(w.lead_id ORDER BY w.lead_id), array_agg(w.earliest ORDER BY w.lead_id),
           array_agg(w.latest ORDER BY w.lead_id)
    INTO v_leads, v_earliest, v_latest
    FROM (SELECT u.lead_id, min(u.earliest) AS earliest, max(u.latest) AS latest
          FROM (SELECT n.lead_id, n.occurred_at AS earliest, n.occurred_at AS latest
                FROM unnest(p_lead_ids, p_occurred_at) AS n (lead_id, occurred_at)
                UNION ALL
                SELECT x.lead_id, x.earliest, x.latest
                FROM jsonb_to_recordset(p_spans)
                  AS x (lead_id bigint, earliest timestamptz, latest timestamptz)) AS u
          WHERE u.lead_id IS NOT NULL
          GROUP BY u.lead_id) AS w;
    IF v_leads IS NOT NULL THEN
        UPDATE leads AS l
        SET first_seen_at = LEAST(l.first_seen_at, span.earliest),
            last_seen_at = GREATEST(l.last_seen_at, span.latest)
        FROM unnest(v_leads, v_earliest, v_latest) AS span (lead_id, earliest, latest)
        WHERE l.account_id = p_account_id AND l.id = ANY (v_leads) AND l.id = span.lead_id
          AND (span.earliest < l.first_seen_at OR span.latest > l.last_seen_at);
    END IF;
    INSERT INTO queue_groups AS q (account_id, source, event_type, event_name, count,
                                   first_seen_at, last_seen_at, sample)
    SELECT p_account_id, n.source, coalesce(n.event_type, ''), coalesce(n.event_name, ''),
           count(*), p_now, p_now, (array_agg(n.payload ORDER BY n.id))[1]
    FROM unnest(p_ids, p_rule_ids, p_sources, p_event_types, p_event_names, p_payloads)
      AS n (id, rule_id, source, event_type, event_name, payload)
    WHERE n.rule_id IS NULL
    GROUP BY 2, 3, 4
    ORDER BY 2, 3, 4
    ON CONFLICT (account_id, source, event_type, event_name) DO UPDATE
    SET count = q.count + excluded.count, last_seen_at = excluded.last_seen_at;
    RETURN true;
END
$fn$;

-- receiver_settle_columns with the new signals as JSON rows (p_new: id, lead_id,
-- occurred_at, rule_id, source, event_type, event_name, payload), as store.py sends them.
CREATE FUNCTION receiver_settle(p_account_id bigint, p_period_start date, p_limit bigint,
                                p_new jsonb, p_spans jsonb, p_now timestamptz)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_generic_plan
AS $fn$
BEGIN
    RETURN (
        SELECT receiver_settle_columns(
                   p_account_id, p_period_start, p_limit, array_agg(n.id), array_agg(n.lead_id),
                   array_agg(n.occurred_at), array_agg(n.rule_id), array_agg(n.source),
                   array_agg(n.event_type), array_agg(n.event_name), array_agg(n.payload),
                   p_spans, p_now)
        FROM jsonb_to_recordset(p_new)
          AS n (id bigint, lead_id bigint, occurred_at timestamptz, rule_id bigint,
                source varchar, event_type varchar, event_name varchar, payload jsonb));
END
$fn$;

-- A body's first statement: the key, then the account's rules lock shared, then what is read
-- under it (identity/locks.py, order 1): the rules version the events are mapped with, the
-- month's limit and what is used of it. No row for an unknown or revoked key.
DROP FUNCTION IF EXISTS receiver_begin;
CREATE FUNCTION receiver_begin(p_account_id bigint, p_key_hash bytea, p_lock_namespace integer,
                               p_lock_key integer, p_period_start date)
RETURNS TABLE (key_id bigint, secret varchar, plan varchar, signal_limit bigint,
               rules_version bigint, used bigint, whole_body_signatures boolean)
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_generic_plan
AS $fn$
BEGIN
    PERFORM FROM api_keys AS k
    WHERE k.account_id = p_account_id AND k.key_hash = p_key_hash AND k.revoked_at IS NULL;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock_shared(p_lock_namespace, p_lock_key);
    -- VOLATILE: this statement takes its snapshot after the lock is granted.
    RETURN QUERY
    SELECT k.id, k.secret, a.plan, a.signal_limit, a.rules_version, coalesce(u.used, 0),
           k.whole_body_signatures
    FROM api_keys AS k
    JOIN accounts AS a ON a.id = k.account_id
    LEFT JOIN usage_counters AS u ON u.account_id = a.id AND u.period_start = p_period_start
    WHERE k.account_id = p_account_id AND k.key_hash = p_key_hash AND k.revoked_at IS NULL;
END
$fn$;

-- A plain body's last statement: its placed signals inserted, then settled; past the month's
-- limit it raises SQLSTATE RL429, so that nothing of it commits.
CREATE FUNCTION receiver_store_placed(p_account_id bigint, p_period_start date, p_limit bigint,
                                      p_rows jsonb, p_now timestamptz,
                                      OUT content_hashes bytea[], OUT signal_ids bigint[],
                                      OUT cold boolean[])
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_generic_plan
AS $fn$
DECLARE
    v_settled boolean;
BEGIN
    -- The settle's columns straight from the inserted rows: as JSON rows (to_jsonb,
    -- jsonb_agg, then read twice again) they cost a 100-event body about 1.8 ms of its 9 ms
    -- of backend CPU.
    SELECT array_agg(n.content_hash), array_agg(n.id), array_agg(n.is_cold),
           receiver_settle_columns(
               p_account_id, p_period_start, p_limit, array_agg(n.id), array_agg(n.lead_id),
               array_agg(n.occurred_at), array_agg(n.rule_id), array_agg(n.source),
               array_agg(n.event_type), array_agg(n.event_name),
               array_agg(CASE WHEN n.rule_id IS NULL THEN n.payload END), '[]'::jsonb, p_now)
    INTO content_hashes, signal_ids, cold, v_settled
    FROM receiver_insert_signals(p_account_id, p_rows, p_now) AS n;
    IF NOT v_settled THEN
        RAISE EXCEPTION 'new signals past the month''s limit' USING ERRCODE = 'RL429';
    END IF;
END
$fn$;
