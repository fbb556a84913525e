-- The web activity case (schema web): page views from Kafka into per-minute
-- aggregates, detectors over them, and the views the dashboards query
-- (dashboards/web_activity.json for Grafana, web.dashboard for psql).
-- make demo runs it; psql variable brokers names the Kafka bootstrap servers.
CREATE SCHEMA web;
SET search_path = web, public;
CREATE TABLE events (event_time timestamptz, page text, user_id bigint, client_ip text, country text,
                     user_agent text, status integer, latency_ms double precision, bytes integer);
SELECT pipeline.create_aggregate('page_minute', $$
    SELECT page, date_trunc('minute', event_time) AS minute, count(*) AS views,
           count(*) FILTER (WHERE status >= 500) AS errors, avg(latency_ms) AS latency, max(latency_ms) AS worst
      FROM events GROUP BY page, minute$$);
SELECT pipeline.create_aggregate('site_minute', $$
    SELECT date_trunc('minute', event_time) AS minute, count(*) AS views,
           count(*) FILTER (WHERE status >= 500) AS errors, avg(latency_ms) AS latency, sum(bytes) AS bytes
      FROM events GROUP BY minute$$);
SELECT pipeline.create_aggregate('segment_minute', $$
    SELECT country, pipeline.user_agent_family(user_agent) AS browser, (status / 100) || 'xx' AS status_class,
           date_trunc('minute', event_time) AS minute, count(*) AS views
      FROM events GROUP BY country, browser, status_class, minute$$);
SELECT pipeline.create_aggregate('client_minute', $$
    SELECT client_ip, date_trunc('minute', event_time) AS minute, count(*) AS requests
      FROM events GROUP BY client_ip, minute$$);
-- distinct users and latency percentiles per minute (view audience): with
-- the hll and tdigest extensions when the server has them (Debian:
-- postgresql-15-hll, postgresql-15-tdigest), their states folded like any
-- other aggregate; without them (or with psql variable exact_audience set),
-- exact distinct users per minute from a per-minute, per-user aggregate
-- (costlier: a group per user and minute), and no percentiles
SELECT count(*) = 2 AS sketches FROM pg_available_extensions WHERE name IN ('hll', 'tdigest') \gset
\if :{?exact_audience}
\set sketches false
\endif
\if :sketches
CREATE EXTENSION IF NOT EXISTS hll SCHEMA public;
CREATE EXTENSION IF NOT EXISTS tdigest SCHEMA public;
SELECT pipeline.create_aggregate('audience_minute', $$
    SELECT date_trunc('minute', event_time) AS minute, hll_add_agg(hll_hash_bigint(user_id)) AS users,
           tdigest(latency_ms, 100) AS latency_digest
      FROM events GROUP BY minute$$);
CREATE VIEW audience AS
SELECT a.minute, round(hll_cardinality(a.users)) AS users, p.percentiles[1] AS p50_latency_ms,
       p.percentiles[2] AS p95_latency_ms, p.percentiles[3] AS p99_latency_ms
  FROM audience_minute a,
       LATERAL (SELECT array_agg(round(q::numeric, 1)) AS percentiles
                  FROM unnest((SELECT tdigest_percentile(d, ARRAY[0.5, 0.95, 0.99]) FROM (SELECT a.latency_digest) x(d))) q) p;
\else
SELECT pipeline.create_aggregate('user_minute', $$
    SELECT date_trunc('minute', event_time) AS minute, user_id, count(*) AS views
      FROM events WHERE user_id IS NOT NULL GROUP BY minute, user_id$$);
CREATE VIEW audience AS
SELECT minute, count(*) AS users, NULL::numeric AS p50_latency_ms, NULL::numeric AS p95_latency_ms,
       NULL::numeric AS p99_latency_ms
  FROM user_minute GROUP BY minute;
\endif
SELECT pipeline.create_detector('site_traffic', 'site_minute', 'views',
    '{"time_column": "minute", "window": "1 minute", "direction": "drop", "threshold": 5}');
SELECT pipeline.create_detector('page_errors', 'page_minute', 'errors',
    '{"time_column": "minute", "window": "1 minute", "series": ["page"], "direction": "spike",
      "threshold": 5, "min_stddev": 2, "min_volume": 5}');
SELECT pipeline.create_detector('bots', 'client_minute', 'requests',
    '{"time_column": "minute", "window": "1 minute", "series": ["client_ip"], "direction": "spike",
      "min_volume": 50, "missing_as_zero": false, "new_series": "population"}');

-- what the dashboards show
CREATE VIEW traffic AS
SELECT minute, views, errors, round(100.0 * errors / NULLIF(views, 0), 2) AS error_pct,
       round(latency::numeric, 1) AS avg_latency_ms, bytes
  FROM site_minute;
CREATE VIEW page_latency AS
SELECT page, minute, views, round(latency::numeric, 1) AS avg_latency_ms, worst AS worst_latency_ms
  FROM page_minute;
CREATE VIEW top_pages AS
SELECT page, sum(views) AS views, sum(errors) AS errors,
       round(100.0 * sum(errors) / NULLIF(sum(views), 0), 2) AS error_pct,
       round((sum(views * latency) / NULLIF(sum(views), 0))::numeric, 1) AS avg_latency_ms
  FROM page_minute WHERE minute >= (SELECT max(minute) FROM site_minute) - interval '1 hour'
 GROUP BY page;
CREATE VIEW segments AS
SELECT country, browser, status_class, sum(views) AS views
  FROM segment_minute WHERE minute >= (SELECT max(minute) FROM site_minute) - interval '1 hour'
 GROUP BY country, browser, status_class;
CREATE VIEW alerts AS
SELECT 'site_traffic' AS detector, alert_id, series, direction, started_at, last_window, ended_at, windows,
       observed, round(expected::numeric, 1) AS expected, round(score::numeric, 1) AS score, status
  FROM site_traffic_alerts
UNION ALL
SELECT 'page_errors', alert_id, series, direction, started_at, last_window, ended_at, windows,
       observed, round(expected::numeric, 1), round(score::numeric, 1), status
  FROM page_errors_alerts
UNION ALL
SELECT 'bots', alert_id, series, direction, started_at, last_window, ended_at, windows,
       observed, round(expected::numeric, 1), round(score::numeric, 1), status
  FROM bots_alerts;
-- for the terminal: the last 20 minutes, newest first, traffic as a bar
CREATE VIEW dashboard AS
SELECT to_char(t.minute, 'HH24:MI') AS minute, t.views,
       repeat('#', (30 * t.views / NULLIF(max(t.views) OVER (), 0))::int) AS traffic,
       t.errors, t.error_pct, t.avg_latency_ms,
       (SELECT string_agg(a.detector || ' ' || a.direction || ' ' || (SELECT string_agg(v, ',') FROM jsonb_each_text(a.series) s(k, v)), '; ')
          FROM alerts a WHERE a.started_at = t.minute) AS alerts_raised
  FROM (SELECT * FROM traffic ORDER BY minute DESC LIMIT 20) t
 ORDER BY t.minute DESC;

-- three hours of history ending now, with an error spike on the home page 45 minutes ago
-- and a bot 20 minutes ago, inserted five minutes at a time as a stream would land it
CREATE TABLE history AS
SELECT * FROM pipeline.simulate_web_traffic(180, 300, 11, date_trunc('minute', now()) - interval '180 minutes',
    '[{"kind": "error_spike", "page": "/", "start_minute": 135, "minutes": 4, "size": 0.5},
      {"kind": "bot_burst", "client_ip": "203.0.113.66", "start_minute": 160, "minutes": 2, "size": 400}]');
DO $$
BEGIN
    FOR m IN 0..175 BY 5 LOOP
        INSERT INTO web.events SELECT * FROM web.history
         WHERE event_time >= date_trunc('minute', now()) - interval '180 minutes' + make_interval(mins => m)
           AND event_time < date_trunc('minute', now()) - interval '180 minutes' + make_interval(mins => m + 5)
         ORDER BY event_time;
    END LOOP;
END $$;
DROP TABLE history;
-- and live, from Kafka topic web (the demo streams about 5 page views a second)
SELECT pipeline.create_kafka_source('web_events', :'brokers', 'web', 'web.events', 'json',
    '{"max_batch_latency_ms": 200}');
-- and the web servers' access log lines (combined log format) from topic web-logs
SELECT pipeline.create_kafka_source('web_logs', :'brokers', 'web-logs', 'web.events', 'access_log',
    '{"columns": {"event_time": "time", "page": "path", "client_ip": "client", "user_agent": "user_agent",
                  "status": "status", "bytes": "bytes"}, "max_batch_latency_ms": 200}');
