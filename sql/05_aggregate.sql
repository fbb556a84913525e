-- Continuous aggregates: definition, folding of inserts, updates, deletes and
-- truncation, the consistency check, privileges and every refusal.
\set SHOW_CONTEXT never
CREATE TABLE store_sales (store_id integer, product text, amount numeric(10,2), qty integer,
                    price double precision, ok boolean, flags integer, ts timestamptz);
INSERT INTO store_sales
SELECT i % 3, 'p' || (i % 2), i * 1.25, i, i / 7.0, i % 5 <> 0, i, '2026-11-01'::timestamptz + i * interval '5 hours'
  FROM generate_series(1, 24) i;

-- an aggregate over a table that has rows starts filled (backfill)
SELECT pipeline.create_aggregate('daily_sales',
    $$SELECT store_id, date_trunc('day', ts) AS day, count(*) AS sales, sum(amount) AS revenue,
             avg(amount) AS avg_amount, min(price) AS min_price, max(qty) AS max_qty,
             stddev(price) AS sd_price, bool_and(ok) AS all_ok, bit_or(flags) AS any_flags,
             count(*) FILTER (WHERE qty > 10) AS big_sales
        FROM store_sales WHERE amount > 0 GROUP BY store_id, day$$);
SELECT name, owner, source, output, state_table, column_names, key_columns, where_clause
  FROM pipeline.aggregates;
SELECT column_exprs FROM pipeline.aggregates;
\d daily_sales
SELECT * FROM daily_sales ORDER BY store_id, day LIMIT 4;
SELECT * FROM pipeline.check_aggregate('daily_sales');

-- inserts fold in, including NULL keys, which form a group of their own
INSERT INTO store_sales VALUES (NULL, 'p1', 10, 1, 0.5, true, 1, '2026-11-02'),
                         (NULL, 'p1', 20, 2, 1.5, false, 2, '2026-11-02'),
                         (1, 'p0', -5, 3, 2.5, true, 4, '2026-11-02');
SELECT * FROM daily_sales WHERE store_id IS NULL;
INSERT INTO store_sales SELECT i % 4, 'p0', i, i, i / 3.0, true, i, '2026-11-01'::timestamptz + i * interval '3 hours'
  FROM generate_series(1, 40) i;
SELECT count(*) AS groups, sum(sales) AS sales FROM daily_sales;
SELECT * FROM pipeline.check_aggregate('daily_sales');

-- updates and deletes recompute the groups they touch
UPDATE store_sales SET amount = amount + 100 WHERE store_id = 1;
DELETE FROM store_sales WHERE store_id = 2 AND qty < 20;
DELETE FROM store_sales WHERE store_id IS NULL;
SELECT count(*) FROM daily_sales WHERE store_id IS NULL;
UPDATE store_sales SET ts = ts + interval '30 days' WHERE store_id = 3;
SELECT * FROM pipeline.check_aggregate('daily_sales');

-- a rolled-back insert leaves no trace
BEGIN;
INSERT INTO store_sales VALUES (9, 'p9', 1, 1, 1, true, 1, '2026-11-05');
SELECT count(*) FROM daily_sales WHERE store_id = 9;
ROLLBACK;
SELECT count(*) FROM daily_sales WHERE store_id = 9;

-- the check reports a tampered output row
UPDATE daily_sales SET sales = sales + 1 WHERE store_id = 0 AND day = '2026-11-02';
SELECT group_key, stored->'sales' AS stored_sales, recomputed->'sales' AS recomputed_sales
  FROM pipeline.check_aggregate('daily_sales');
SELECT pipeline.rebuild_aggregate('daily_sales');
SELECT * FROM pipeline.check_aggregate('daily_sales');

-- truncating the table empties the aggregate
TRUNCATE store_sales;
SELECT count(*) FROM daily_sales;
SELECT count(*) FROM daily_sales_state;

-- a second aggregate on the same table, with its output in another schema
CREATE SCHEMA reports;
SELECT pipeline.create_aggregate('product_totals',
    $$SELECT product, sum(qty) AS qty, count(*) AS n FROM store_sales GROUP BY product$$,
    '{"output": "reports.products"}');
INSERT INTO store_sales VALUES (1, 'p1', 1, 5, 1, true, 1, now()), (1, NULL, 1, 7, 1, true, 1, now());
SELECT * FROM reports.products ORDER BY product;

-- refusals
SELECT pipeline.create_aggregate('daily_sales', $$SELECT store_id, count(*) FROM store_sales GROUP BY 1$$);
SELECT pipeline.create_aggregate('', $$SELECT store_id, count(*) FROM store_sales GROUP BY 1$$);
SELECT pipeline.create_aggregate('x', NULL);
SELECT pipeline.create_aggregate('x', $$SELECT store_id, count(*) FROM store_sales GROUP BY 1$$, '{"outptu": "y"}');
SELECT pipeline.create_aggregate('x', $$SELECT store_id, array_agg(qty) AS qs FROM store_sales GROUP BY 1$$);
SELECT pipeline.create_aggregate('x', $$SELECT store_id, string_agg(product, ',') AS ps FROM store_sales GROUP BY 1$$);
SELECT pipeline.create_aggregate('x', $$SELECT store_id, count(DISTINCT product) AS n FROM store_sales GROUP BY 1$$);
SELECT pipeline.create_aggregate('x', $$SELECT store_id, percentile_cont(0.5) WITHIN GROUP (ORDER BY price) AS p FROM store_sales GROUP BY 1$$);
SELECT pipeline.create_aggregate('x', $$SELECT store_id, sum(qty ORDER BY ts) AS q FROM store_sales GROUP BY 1$$);
SELECT pipeline.create_aggregate('x', $$SELECT store_id, sum(qty) / count(*) AS mean FROM store_sales GROUP BY 1$$);
SELECT pipeline.create_aggregate('x', $$SELECT count(*) AS n FROM store_sales$$);
SELECT pipeline.create_aggregate('x', $$SELECT store_id, qty FROM store_sales$$);
SELECT pipeline.create_aggregate('x', $$SELECT count(*) AS n FROM store_sales GROUP BY store_id$$);
SELECT pipeline.create_aggregate('x', $$SELECT store_id + 1, count(*) AS n FROM store_sales GROUP BY 1$$);
SELECT pipeline.create_aggregate('x', $$SELECT store_id, count(*) AS n, sum(qty) AS n FROM store_sales GROUP BY 1$$);
SELECT pipeline.create_aggregate('x', $$SELECT store_id AS __key, count(*) AS n FROM store_sales GROUP BY 1$$);
SELECT pipeline.create_aggregate('x', $$SELECT store_id, count(*) AS n FROM store_sales GROUP BY 1 HAVING count(*) > 1$$);
SELECT pipeline.create_aggregate('x', $$SELECT store_id, count(*) AS n FROM store_sales GROUP BY 1 ORDER BY 1$$);
SELECT pipeline.create_aggregate('x', $$SELECT store_id, count(*) AS n FROM store_sales GROUP BY ROLLUP (1)$$);
SELECT pipeline.create_aggregate('x', $$SELECT s.store_id, count(*) AS n FROM store_sales s JOIN store_sales t USING (qty) GROUP BY 1$$);
SELECT pipeline.create_aggregate('x', $$SELECT store_id, count(*) AS n FROM store_sales WHERE qty > (SELECT 1) GROUP BY 1$$);
SELECT pipeline.create_aggregate('x', $$SELECT store_id, count(*) AS n FROM store_sales WHERE random() > 0.5 GROUP BY 1$$);
SELECT pipeline.create_aggregate('x', $$SELECT store_id, sum(qty) OVER () AS n FROM store_sales GROUP BY 1, qty$$);
SELECT pipeline.create_aggregate('x', $$SELECT store_id, count(*) AS n FROM store_sales GROUP BY 1; SELECT 1$$);
SELECT pipeline.create_aggregate('x', $$INSERT INTO store_sales DEFAULT VALUES$$);
CREATE VIEW sales_view AS SELECT * FROM store_sales;
SELECT pipeline.create_aggregate('x', $$SELECT store_id, count(*) AS n FROM sales_view GROUP BY 1$$);
CREATE TABLE points (p point);
SELECT pipeline.create_aggregate('x', $$SELECT p, count(*) AS n FROM points GROUP BY 1$$);
SELECT pipeline.create_aggregate('x', $$SELECT p::text AS p, count(*) AS n FROM points GROUP BY 1$$) IS NOT NULL AS text_key_works;
SELECT pipeline.create_aggregate('y', $$SELECT store_id, count(*) AS n FROM nowhere GROUP BY 1$$);
SELECT pipeline.create_aggregate('y', $$SELECT store_id, count(*) AS n FROM store_sales GROUP BY 1$$, '{"output": "a.b.c"}');
SELECT pipeline.drop_aggregate('nope');
SELECT pipeline.check_aggregate('nope');

-- names resolve with the caller's search_path at creation, and are stored qualified
CREATE SCHEMA shop;
CREATE TABLE shop.orders (region text, total numeric);
SET search_path = shop, public;
SELECT pipeline.create_aggregate('regions', $$SELECT region, sum(total) AS total FROM orders GROUP BY region$$);
RESET search_path;
INSERT INTO shop.orders VALUES ('north', 5), ('north', 7), ('south', 1);
SELECT * FROM shop.regions ORDER BY region;
SELECT source, output, column_exprs FROM pipeline.aggregates WHERE name = 'regions';

-- privileges: the creator needs SELECT and TRIGGER; others' aggregates are invisible
CREATE ROLE agg_reader LOGIN;
CREATE ROLE agg_writer LOGIN;
GRANT USAGE ON SCHEMA shop TO agg_reader, agg_writer;
GRANT SELECT ON shop.orders TO agg_reader;
GRANT INSERT ON shop.orders TO agg_writer;
SET ROLE agg_reader;
SELECT pipeline.create_aggregate('mine', $$SELECT region, count(*) AS n FROM shop.orders GROUP BY 1$$);
SELECT name FROM pipeline.aggregates;
SELECT pipeline.drop_aggregate('regions');
SELECT pipeline.aggregate_backfill(id, owner) FROM (SELECT 1::bigint AS id, 10::oid AS owner) x;
RESET ROLE;
SET ROLE agg_writer;
SELECT pipeline.create_aggregate('mine', $$SELECT region, count(*) AS n FROM shop.orders GROUP BY 1$$);
-- a writer without rights on the output still feeds it: the aggregate runs as its owner
INSERT INTO shop.orders VALUES ('west', 3);
RESET ROLE;
SELECT * FROM shop.regions ORDER BY region;

-- dropping removes triggers, states and output (or keeps the output)
SELECT pipeline.drop_aggregate('regions', keep_output => true);
SELECT count(*) AS regions_rows FROM shop.regions;
SELECT to_regclass('shop.regions_state') IS NULL AS state_dropped;
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'shop.orders'::regclass;
SELECT pipeline.drop_aggregate('daily_sales');
SELECT pipeline.drop_aggregate('product_totals');
SELECT pipeline.drop_aggregate('x');
SELECT name FROM pipeline.aggregates;
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'store_sales'::regclass;

-- sliding windows: panes kept as groups, combined when read
CREATE TABLE hits (page text, latency double precision, ts timestamptz);
SELECT pipeline.create_aggregate('page_load', $$
    SELECT page, date_bin('10 seconds', ts, '2000-01-01') AS pane, count(*) AS views,
           avg(latency) AS latency, max(latency) AS worst
      FROM hits GROUP BY page, pane$$, '{"window": {"pane": "pane", "size": "1 minute"}}');
INSERT INTO hits SELECT 'p' || (i % 3), i, '2026-11-30 10:00:00+00'::timestamptz + i * interval '1 second'
  FROM generate_series(0, 299) i;
SELECT count(*) AS panes FROM page_load;
-- the panes starting in (10:00:00, 10:01:00], so the events of [10:00:10, 10:01:10)
SELECT * FROM page_load_window('2026-11-30 10:01:00+00') ORDER BY page;
SELECT page, count(*) AS views, avg(latency) AS latency, max(latency) AS worst
  FROM hits WHERE ts >= '2026-11-30 10:00:10+00' AND ts < '2026-11-30 10:01:10+00'
 GROUP BY page ORDER BY page;
SELECT * FROM page_load_window('2020-01-01');
SELECT count(*) FROM page_load_live;  -- now: no events in the last minute
SELECT window_pane, window_size FROM pipeline.aggregates WHERE name = 'page_load';
SELECT pipeline.create_aggregate('w', $$SELECT page, date_bin('10 seconds', ts, '2000-01-01') AS pane, count(*) AS n FROM hits GROUP BY 1, 2$$,
    '{"window": {"pane": "pane"}}');
SELECT pipeline.create_aggregate('w', $$SELECT page, date_bin('10 seconds', ts, '2000-01-01') AS pane, count(*) AS n FROM hits GROUP BY 1, 2$$,
    '{"window": {"pane": "page", "size": "1 minute"}}');
SELECT pipeline.create_aggregate('w', $$SELECT page, date_bin('10 seconds', ts, '2000-01-01') AS pane, count(*) AS n FROM hits GROUP BY 1, 2$$,
    '{"window": {"pane": "pane", "size": "soon"}}');
SELECT pipeline.create_aggregate('w', $$SELECT page, date_bin('10 seconds', ts, '2000-01-01') AS pane, count(*) AS n FROM hits GROUP BY 1, 2$$,
    '{"window": {"pane": "pane", "size": "-1 minute"}}');
SELECT pipeline.create_aggregate('hits_per_page', $$SELECT page, count(*) AS n FROM hits GROUP BY 1$$);
SELECT * FROM pipeline.aggregate_window((SELECT id FROM pipeline.aggregates WHERE name = 'hits_per_page'), now()) AS w(p text, n bigint);
SELECT pipeline.drop_aggregate('hits_per_page');
SELECT pipeline.drop_aggregate('page_load');
SELECT to_regclass('page_load_live') IS NULL AS view_dropped, to_regprocedure('page_load_window(timestamptz)') IS NULL AS function_dropped;

-- allowed lateness: streamed rows older than the latest time key minus it go to <output>_late
-- (rows inserted into a table always merge: see test/integration/aggregate_lateness.sh)
SELECT pipeline.create_aggregate('hits_per_minute', $$
    SELECT page, date_trunc('minute', ts) AS minute, count(*) AS views FROM hits GROUP BY 1, 2$$,
    '{"allowed_lateness": "5 minutes"}');
SELECT time_key, allowed_lateness, late_table FROM pipeline.aggregates WHERE name = 'hits_per_minute';
SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
 WHERE attrelid = 'hits_per_minute_late'::regclass AND attnum > 0 ORDER BY attnum;
SELECT pipeline.create_aggregate('w', $$SELECT page, count(*) AS n FROM hits GROUP BY 1$$,
    '{"allowed_lateness": "5 minutes"}');
SELECT pipeline.create_aggregate('w', $$SELECT date_trunc('hour', ts) AS hour, date_trunc('minute', ts) AS minute, count(*) AS n FROM hits GROUP BY 1, 2$$,
    '{"allowed_lateness": "5 minutes"}');
SELECT pipeline.create_aggregate('w', $$SELECT page, date_trunc('minute', ts) AS minute, count(*) AS n FROM hits GROUP BY 1, 2$$,
    '{"allowed_lateness": "5 minutes", "time_key": "page"}');
SELECT pipeline.create_aggregate('w', $$SELECT page, date_trunc('minute', ts) AS minute, count(*) AS n FROM hits GROUP BY 1, 2$$,
    '{"allowed_lateness": "a while"}');
SELECT pipeline.create_aggregate('w', $$SELECT page, date_trunc('minute', ts) AS minute, count(*) AS n FROM hits GROUP BY 1, 2$$,
    '{"time_key": "minute"}');
SELECT pipeline.drop_aggregate('hits_per_minute');
SELECT to_regclass('hits_per_minute_late') IS NULL AS late_table_dropped;

-- rollups combine an aggregate's states (hourly -> daily), never its finished values
CREATE TABLE ticks (store_id integer, amount numeric(10,2), price double precision, ts timestamptz);
INSERT INTO ticks SELECT i % 4, i * 0.5, i / 3.0, '2026-11-01 00:00+00'::timestamptz + i * interval '37 minutes'
  FROM generate_series(1, 500) i;
SELECT pipeline.create_aggregate('hourly', $$SELECT store_id, date_trunc('hour', ts) AS hour, count(*) AS n,
    sum(amount) AS total, avg(amount) AS mean, max(price) AS top FROM ticks GROUP BY 1, 2$$);
SELECT pipeline.create_rollup('daily', 'hourly', $$store_id, date_trunc('day', hour) AS day$$);
SELECT name, query, rollup_of IS NOT NULL AS is_rollup, column_exprs FROM pipeline.aggregates WHERE name = 'daily';
SELECT * FROM daily ORDER BY store_id, day LIMIT 3;
SELECT store_id, date_trunc('day', ts) AS day, count(*) AS n, sum(amount) AS total, avg(amount) AS mean, max(price) AS top
  FROM ticks GROUP BY 1, 2 ORDER BY 1, 2 LIMIT 3;
INSERT INTO ticks SELECT i % 5, i, i, '2026-11-01 00:00+00'::timestamptz + i * interval '11 minutes' FROM generate_series(1, 300) i;
UPDATE ticks SET amount = amount * 2 WHERE store_id = 2;
DELETE FROM ticks WHERE store_id = 3 AND amount < 50;
SELECT * FROM pipeline.check_aggregate('daily');
SELECT (SELECT sum(n) FROM daily) = (SELECT count(*) FROM ticks) AS every_row_counted_once;
SELECT pipeline.rebuild_aggregate('hourly');
SELECT * FROM pipeline.check_aggregate('daily');
-- refusals
SELECT pipeline.create_rollup('weekly', 'daily', $$store_id$$);
SELECT pipeline.create_rollup('bad', 'hourly', $$n$$);
SELECT pipeline.create_rollup('bad', 'hourly', $$store_id AS n$$);
SELECT pipeline.create_rollup('bad', 'hourly', $$store_id + 1$$);
SELECT pipeline.create_rollup('bad', 'hourly', $$count(*) AS c$$);
SELECT pipeline.create_rollup('bad', 'hourly', '');
SELECT pipeline.create_rollup('bad', 'nope', $$store_id$$);
SELECT pipeline.drop_aggregate('hourly');
TRUNCATE ticks;
SELECT count(*) FROM daily;
SELECT pipeline.drop_aggregate('daily');
SELECT pipeline.drop_aggregate('hourly');

-- INSERT ... ON CONFLICT DO UPDATE and MERGE count each row once: their
-- UPDATE trigger fires first and recomputes, and their INSERT trigger then
-- skips the groups that recomputation already read
CREATE TABLE kv (k integer PRIMARY KEY, grp integer, v integer);
SELECT pipeline.create_aggregate('kv_sum', $$SELECT grp, count(*) AS n, sum(v) AS total FROM kv GROUP BY grp$$);
INSERT INTO kv VALUES (1, 1, 10), (2, 1, 20);
INSERT INTO kv VALUES (2, 1, 25), (3, 1, 30), (4, 2, 40) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v;
SELECT * FROM kv_sum ORDER BY grp;
SELECT * FROM pipeline.check_aggregate('kv_sum');
MERGE INTO kv USING (VALUES (1, 1, 11), (5, 1, 50), (4, 2, 0), (8, 2, 8)) AS s(k, grp, v) ON kv.k = s.k
  WHEN MATCHED AND s.v = 0 THEN DELETE
  WHEN MATCHED THEN UPDATE SET v = s.v
  WHEN NOT MATCHED THEN INSERT VALUES (s.k, s.grp, s.v);
SELECT * FROM kv_sum ORDER BY grp;
SELECT * FROM pipeline.check_aggregate('kv_sum');
-- two statements of one function are two queries: the second's rows count
CREATE FUNCTION two_statements() RETURNS void LANGUAGE plpgsql AS $f$
BEGIN
  INSERT INTO kv VALUES (1, 1, 12) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v;
  INSERT INTO kv VALUES (9, 1, 90);
END $f$;
SELECT two_statements();
SELECT * FROM kv_sum ORDER BY grp;
SELECT * FROM pipeline.check_aggregate('kv_sum');
SELECT pipeline.drop_aggregate('kv_sum');
DROP FUNCTION two_statements();
DROP TABLE kv;

-- the trigger function refuses to be used by hand
CREATE TABLE t (a int);
CREATE TRIGGER mine AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION pipeline.aggregate_trigger('1', '10');
INSERT INTO t VALUES (1);
DROP TABLE t;
DROP SCHEMA shop CASCADE;
DROP SCHEMA reports CASCADE;
DROP ROLE agg_reader;
DROP ROLE agg_writer;
