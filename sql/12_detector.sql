-- Anomaly detectors: online baselines per series of a windowed table, one alert
-- per incident, warm-up, minimum volume, missing windows, and the refusals.
\set SHOW_CONTEXT never
SET timezone = 'UTC';

-- page views per minute and page, as a continuous aggregate keeps them
CREATE TABLE views (page text, user_id bigint, status integer, seen_at timestamptz);
SELECT pipeline.create_aggregate('views_per_minute', $$
    SELECT page, date_trunc('minute', seen_at) AS minute, count(*) AS views,
           count(*) FILTER (WHERE status >= 500) AS errors
      FROM views GROUP BY page, minute$$);
SELECT pipeline.create_detector('traffic', 'views_per_minute', 'views',
    '{"time_column": "minute", "window": "1 minute", "series": ["page"], "warm_up": 5, "min_volume": 20}');
SELECT pipeline.create_detector('server_errors', 'views_per_minute', 'errors',
    '{"time_column": "minute", "window": "1 minute", "series": ["page"], "direction": "spike", "warm_up": 5}');
SELECT name, source, value_column, series_columns, window_length, closed_until, alerts, baselines
  FROM pipeline.detector_status ORDER BY name;

-- 60 minutes of traffic, a minute per statement as a stream lands it:
-- home ~100 views a minute, about ~50, docs ~3 (under min_volume), help steady;
-- home spikes to 400 in minutes 20-22; about stops in minutes 40-42; docs
-- jumps to 12 in minute 30; checkout errors rise in minutes 45-46
CREATE FUNCTION minute_of_traffic(m integer) RETURNS integer LANGUAGE sql AS $$
    INSERT INTO views
    SELECT p.page, i, CASE WHEN p.page = 'checkout' AND m IN (45, 46) AND i % 2 = 0 THEN 503 ELSE 200 END,
           '2026-11-30 08:00'::timestamptz + make_interval(mins => m) + make_interval(secs => i % 60)
      FROM (VALUES ('home', CASE WHEN m BETWEEN 20 AND 22 THEN 400 ELSE 100 + (m * 7) % 9 END),
                   ('about', CASE WHEN m BETWEEN 40 AND 42 THEN 0 ELSE 50 + (m * 5) % 7 END),
                   ('docs', CASE WHEN m = 30 THEN 12 ELSE 2 + m % 3 END),
                   ('help', 30 + (m * 3) % 5),
                   ('checkout', 40 + (m * 11) % 6)) p(page, n),
           generate_series(1, p.n) i;
    SELECT m
$$;
SELECT count(minute_of_traffic(m)) FROM generate_series(0, 59) m;

-- each incident is one alert, from its first anomalous window to the first normal one
SELECT series->>'page' AS page, direction, started_at, last_window, ended_at, windows, observed,
       round(expected::numeric, 1) AS expected, status
  FROM traffic_alerts ORDER BY alert_id;
SELECT series->>'page' AS page, direction, started_at, ended_at, windows, observed
  FROM server_errors_alerts ORDER BY alert_id;
-- the windows before the newest minute are scored; baselines per page
SELECT name, closed_until FROM pipeline.detector_status ORDER BY name;
SELECT series->>'page' AS page, windows, round(mean::numeric) AS mean, last_window, open_alert
  FROM traffic_baselines ORDER BY 1;

-- an incident still going is one open alert; a new session keeps the baselines
CREATE FUNCTION home_rush(m integer) RETURNS integer LANGUAGE sql AS $$
    INSERT INTO views SELECT 'home', i, 200, '2026-11-30 08:00'::timestamptz + make_interval(mins => m)
      FROM generate_series(1, 900) i;
    SELECT m
$$;
SELECT minute_of_traffic(60), minute_of_traffic(61), minute_of_traffic(62), home_rush(62),
       minute_of_traffic(63), home_rush(63);
\c -
SET timezone = 'UTC';
SELECT minute_of_traffic(64), home_rush(64), minute_of_traffic(65);
SELECT series->>'page' AS page, started_at, last_window, windows, status
  FROM traffic_alerts WHERE started_at >= '2026-11-30 09:00' ORDER BY alert_id;
DROP FUNCTION home_rush(integer);

-- the web traffic generator: seeded, in time order, with incidents
SELECT count(*) AS views, count(DISTINCT page) AS pages, count(DISTINCT user_id) > 4000 AS users,
       min(event_time) AS first, max(event_time) < '2026-01-05 01:00' AS within_the_hour
  FROM pipeline.simulate_web_traffic(60, 500, 3);
SELECT bool_and(event_time >= lag) AS time_ordered
  FROM (SELECT event_time, lag(event_time, 1, '-infinity') OVER () FROM pipeline.simulate_web_traffic(10, 500, 3)) s;
SELECT date_trunc('minute', event_time) AS minute, count(*) AS views,
       count(*) FILTER (WHERE page = '/checkout' AND status = 500) AS checkout_errors,
       count(*) FILTER (WHERE client_ip = '198.51.100.9') AS bot
  FROM pipeline.simulate_web_traffic(6, 500, 3, '2026-01-05 12:00+00',
       '[{"kind": "error_spike", "page": "/checkout", "start_minute": 1, "minutes": 1, "size": 1},
         {"kind": "traffic_drop", "start_minute": 3, "minutes": 1, "size": 0.5},
         {"kind": "bot_burst", "client_ip": "198.51.100.9", "start_minute": 4, "minutes": 1, "size": 250}]')
 GROUP BY 1 ORDER BY 1;
SELECT pipeline.user_agent_family(a) FROM (VALUES
    ('Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36 Edg/120.0'),
    ('Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0'),
    ('Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)'), ('curl/8.4.0'), ('')) v(a);
SELECT * FROM pipeline.simulate_web_traffic(0);
SELECT * FROM pipeline.simulate_web_traffic(10, incidents => '{"kind": "bot_burst"}');
SELECT * FROM pipeline.simulate_web_traffic(10, incidents => '[{"kind": "outage", "start_minute": 1, "minutes": 1, "size": 1}]');
SELECT * FROM pipeline.simulate_web_traffic(10, incidents => '[{"kind": "error_spike", "start_minute": 1, "minutes": 1, "size": 3}]');

-- seasonality: traffic of 100 an hour from 9:00 to 17:00 and 10 at night,
-- for three weeks.  Without seasonality the daily rhythm teaches a wide
-- baseline, so daytime traffic at 3 a.m. and a night-time lull at noon
-- pass; with a baseline per hour of the day (taught for 3 days first), both
-- are incidents, and the rhythm itself is not.
CREATE TABLE hourly (hour timestamptz, views bigint);
SELECT pipeline.create_detector('flat', 'hourly', 'views', '{"time_column": "hour", "window": "1 hour", "warm_up": 24}');
SELECT pipeline.create_detector('daily', 'hourly', 'views',
    '{"time_column": "hour", "window": "1 hour", "warm_up": 24, "seasonality": "hour_of_day", "season_warm_up": 3}');
-- the overall baseline warms up on a few hours of the same kind (here the night's):
-- the day's hours then look anomalous against it, but each still learns, so
-- the day alerts until its hours have seen 3 days, and then never
SELECT pipeline.create_detector('early', 'hourly', 'views',
    '{"time_column": "hour", "window": "1 hour", "warm_up": 5, "seasonality": "hour_of_day", "season_warm_up": 3}');
SELECT pipeline.create_detector('weekly', 'hourly', 'views',
    '{"time_column": "hour", "window": "1 hour", "seasonality": "hour_of_week", "time_zone": "Asia/Kolkata"}');
DO $$
BEGIN
    FOR day IN 0..20 LOOP
        INSERT INTO hourly
        SELECT h, CASE WHEN h = '2026-11-20 03:00+00' OR (extract(hour FROM h) BETWEEN 9 AND 17 AND h <> '2026-11-20 12:00+00')
                       THEN 100 ELSE 10 END + day % 3
          FROM generate_series('2026-11-01'::timestamptz + make_interval(days => day),
                               '2026-11-01'::timestamptz + make_interval(days => day, hours => 23), '1 hour') h;
    END LOOP;
END $$;
SELECT 'flat' AS detector, direction, started_at, observed, round(expected::numeric, 1) AS expected FROM flat_alerts
UNION ALL
SELECT 'daily', direction, started_at, observed, round(expected::numeric, 1) FROM daily_alerts
ORDER BY 1, 3;
SELECT count(*) FILTER (WHERE started_at < '2026-11-04') AS alerts_first_3_days,
       count(*) FILTER (WHERE started_at >= '2026-11-04') AS alerts_after,
       string_agg(to_char(started_at, 'MM-DD HH24:MI'), ', ' ORDER BY started_at) FILTER (WHERE started_at >= '2026-11-04') AS later
  FROM early_alerts;
-- the hours' baselines are kept with the series'
SELECT cardinality(season_mean) AS hours, season_windows[4] AS windows_at_3h,
       round(season_mean[4]::numeric, 1) AS mean_at_3h, round(season_mean[13]::numeric, 1) AS mean_at_noon
  FROM daily_baselines;
-- 168 a week, counted in Asia/Kolkata (UTC+05:30): Sunday 9:30 there is 4:00 UTC (night traffic),
-- Sunday 20:30 there is 15:00 UTC (day traffic); three Sundays seen, so no alert yet
SELECT cardinality(season_mean) AS hours, season_windows[1 + 9] AS sundays,
       round(season_mean[1 + 9]::numeric, 1) AS sunday_9h, round(season_mean[1 + 20]::numeric, 1) AS sunday_20h,
       (SELECT count(*) FROM weekly_alerts) AS alerts
  FROM weekly_baselines;
SELECT pipeline.drop_detector('flat'), pipeline.drop_detector('daily'), pipeline.drop_detector('weekly'),
       pipeline.drop_detector('early');
DROP TABLE hourly;

-- refusals
SELECT pipeline.create_detector('traffic', 'views_per_minute', 'views', '{"time_column": "minute", "window": "1 minute"}');
SELECT pipeline.create_detector('x', 'views_per_minute', 'views', '{"window": "1 minute"}');
SELECT pipeline.create_detector('x', 'views_per_minute', 'page', '{"time_column": "minute", "window": "1 minute"}');
SELECT pipeline.create_detector('x', 'views_per_minute', 'views', '{"time_column": "page", "window": "1 minute"}');
SELECT pipeline.create_detector('x', 'views_per_minute', 'views', '{"time_column": "minute", "window": "1 month"}');
SELECT pipeline.create_detector('x', 'views_per_minute', 'views', '{"time_column": "minute", "window": "soon"}');
SELECT pipeline.create_detector('x', 'views_per_minute', 'views', '{"time_column": "minute", "window": "1 minute", "series": "page"}');
SELECT pipeline.create_detector('x', 'views_per_minute', 'views', '{"time_column": "minute", "window": "1 minute", "series": ["nope"]}');
SELECT pipeline.create_detector('x', 'views_per_minute', 'views', '{"time_column": "minute", "window": "1 minute", "direction": "up"}');
SELECT pipeline.create_detector('x', 'views_per_minute', 'views', '{"time_column": "minute", "window": "1 minute", "alpha": 0}');
SELECT pipeline.create_detector('x', 'views_per_minute', 'views', '{"time_column": "minute", "window": "1 minute", "new_series": "guess"}');
SELECT pipeline.create_detector('x', 'views_per_minute', 'views', '{"time_column": "minute", "window": "1 minute", "warm_up": "many"}');
SELECT pipeline.create_detector('x', 'views_per_minute', 'views', '{"time_column": "minute", "window": "1 minute", "colour": 1}');
SELECT pipeline.create_detector('x', 'views_per_minute', 'views', '{"time_column": "minute", "window": "1 minute", "seasonality": "monthly"}');
SELECT pipeline.create_detector('x', 'views_per_minute', 'views', '{"time_column": "minute", "window": "1 minute", "seasonality": "hour_of_day", "time_zone": "Mars/Olympus"}');
-- only the detector's own triggers may run it
CREATE TABLE not_views (minute timestamptz, views bigint);
CREATE TRIGGER pipeline_detector_x AFTER INSERT ON not_views REFERENCING NEW TABLE AS pipeline_new
    FOR EACH STATEMENT EXECUTE FUNCTION pipeline.detector_trigger('1');
INSERT INTO not_views VALUES ('2026-11-30 08:00', 1);
DROP TABLE not_views;

SELECT pipeline.drop_detector('traffic'), pipeline.drop_detector('server_errors');
SELECT pipeline.drop_detector('traffic');
SELECT to_regclass('traffic_alerts'), count(*) FILTER (WHERE tgname LIKE 'pipeline_detector_%') AS triggers
  FROM pg_trigger;
SELECT pipeline.drop_aggregate('views_per_minute');
DROP FUNCTION minute_of_traffic(integer);
DROP TABLE views;
