-- Report tables: a query's result kept in a real table, refreshed whole or by changed partition.
-- (A refresh beside a long-running reader is tested in test/integration/reports.sh.)
\set SHOW_CONTEXT never
SET timezone = 'UTC';
CREATE TABLE sales_fact (day date, store integer, product text, amount numeric);
INSERT INTO sales_fact SELECT '2026-11-01'::date + (i % 3), i % 2, 'p' || (i % 4), i FROM generate_series(1, 24) i;

-- partitioned by day: each input says which day a row of it belongs to
SELECT pipeline.create_report('daily_store_sales', $$
    SELECT day, store, count(*) AS sales, sum(amount) AS revenue FROM sales_fact GROUP BY day, store$$,
    '{"key": ["day", "store"], "partition_column": "day", "inputs": {"sales_fact": "src.day"}}');
SELECT * FROM daily_store_sales ORDER BY day, store;
SELECT indexdef FROM pg_indexes WHERE tablename = 'daily_store_sales';
SELECT report, partition_column, changed_partitions, last_kind, last_rows_inserted FROM pipeline.report_status;

-- a new day, and a late correction of an old one: only those two days are recomputed
INSERT INTO sales_fact VALUES ('2026-11-04', 1, 'p1', 100);
UPDATE sales_fact SET amount = amount + 1000 WHERE day = '2026-11-01' AND store = 0;
SELECT part FROM pipeline.report_dirty ORDER BY part;
SELECT * FROM pipeline.refresh_report('daily_store_sales');
SELECT * FROM daily_store_sales ORDER BY day, store;
-- it equals its query
SELECT count(*) AS differences FROM (
    (SELECT * FROM daily_store_sales EXCEPT SELECT day, store, count(*), sum(amount) FROM sales_fact GROUP BY 1, 2)
    UNION ALL
    (SELECT day, store, count(*), sum(amount) FROM sales_fact GROUP BY 1, 2 EXCEPT SELECT * FROM daily_store_sales)) d;
-- nothing changed: nothing recomputed
SELECT * FROM pipeline.refresh_report('daily_store_sales');
-- deletes count too
DELETE FROM sales_fact WHERE day = '2026-11-04';
SELECT * FROM pipeline.refresh_report('daily_store_sales');
SELECT count(*) FROM daily_store_sales WHERE day = '2026-11-04';
-- a range, recomputed on demand (a backfill)
SELECT * FROM pipeline.refresh_report('daily_store_sales', '2026-11-01', '2026-11-02');
-- TRUNCATE of an input asks for a full refresh
TRUNCATE sales_fact;
SELECT * FROM pipeline.refresh_report('daily_store_sales');
SELECT count(*) FROM daily_store_sales;
SELECT kind, partitions, rows_deleted, rows_inserted FROM pipeline.report_refreshes ORDER BY id;

-- without a partition column a refresh recomputes it whole
INSERT INTO sales_fact SELECT '2026-11-01'::date + (i % 3), i % 2, 'p' || (i % 4), i FROM generate_series(1, 24) i;
SELECT pipeline.create_report('top_products', $$
    SELECT product, sum(amount) AS revenue, rank() OVER (ORDER BY sum(amount) DESC) AS rank
      FROM sales_fact GROUP BY product$$, '{"key": ["product"]}');
INSERT INTO sales_fact VALUES ('2026-11-05', 1, 'p0', 1000);
SELECT * FROM pipeline.refresh_report('top_products');
SELECT * FROM top_products ORDER BY rank;

-- a report over a continuous aggregate's output follows the aggregate
SELECT pipeline.create_aggregate('sales_by_day', $$
    SELECT day, count(*) AS n, sum(amount) AS total FROM sales_fact GROUP BY day$$) IS NOT NULL AS created;
SELECT pipeline.create_report('weekly_totals', $$
    SELECT date_trunc('week', day)::date AS week, sum(total) AS total FROM sales_by_day GROUP BY 1$$,
    '{"partition_column": "week", "inputs": {"sales_by_day": "date_trunc(''week'', src.day)::date"}}');
INSERT INTO sales_fact VALUES ('2026-11-09', 1, 'p0', 7);
SELECT DISTINCT part FROM pipeline.report_dirty WHERE report_id = pipeline.report_id('weekly_totals');
SELECT * FROM pipeline.refresh_report('weekly_totals');
SELECT * FROM weekly_totals ORDER BY week;

-- bad arguments
SELECT pipeline.create_report('', 'SELECT 1 AS x');
SELECT pipeline.create_report('daily_store_sales', 'SELECT 1 AS x');
SELECT pipeline.create_report('r', 'SELECT 1 AS x', '{"partition_column": "x"}');
SELECT pipeline.create_report('r', 'SELECT 1 AS x', '{"partition_column": "y", "inputs": {"sales_fact": "src.day"}}');
SELECT pipeline.create_report('r', 'SELECT 1 AS x', '{"partition_column": "x", "inputs": {"nope": "src.day"}}');
SELECT pipeline.create_report('r', 'SELECT 1 AS x', '{"partition_column": "x", "inputs": {"sales_fact": "src.nope"}}');
SELECT pipeline.create_report('r', 'SELECT 1 AS x', '{"key": "x"}');
SELECT pipeline.create_report('r', 'SELECT 1 AS x', '{"key": ["y"]}');
SELECT pipeline.create_report('r', 'SELECT 1 AS x', '{"output": "a.b.c"}');
SELECT pipeline.create_report('r', 'SELECT nope FROM sales_fact');
SELECT pipeline.create_report('r', 'SELECT 1 AS x', '{"refresh": "daily"}');
SELECT pipeline.refresh_report('nope');
SELECT pipeline.refresh_report('top_products', '2026-11-01', '2026-11-02');
SELECT pipeline.refresh_report('daily_store_sales', '2026-11-01');
SELECT pipeline.create_report('r', 'SELECT 1 AS x', '{"partition_column": "x", "inputs": {"sales_fact": "1; DROP TABLE sales_fact; SELECT 1"}}');
SELECT to_regclass('r') IS NULL AS nothing_left_behind;

-- another role can neither add inputs or marks to a report, nor fire its trigger by hand
SELECT id AS report_id FROM pipeline.reports WHERE name = 'daily_store_sales' \gset
CREATE ROLE report_intruder;
CREATE TABLE intruder_t (day date);
ALTER TABLE intruder_t OWNER TO report_intruder;
SET ROLE report_intruder;
INSERT INTO pipeline.report_inputs (report_id, input, expression) VALUES (:report_id, 'intruder_t', 'src.day');
INSERT INTO pipeline.report_dirty (report_id, owner, part) VALUES (:report_id, 'report_intruder', 'x');
SELECT count(*) AS visible FROM pipeline.report_dirty;
CREATE TRIGGER sneaky AFTER INSERT ON intruder_t REFERENCING NEW TABLE AS pipeline_new
    FOR EACH STATEMENT EXECUTE FUNCTION pipeline.report_input_trigger(:'report_id', '10');
INSERT INTO intruder_t VALUES ('2026-11-01');
CREATE TRIGGER pipeline_report_1_insert AFTER INSERT ON intruder_t REFERENCING NEW TABLE AS pipeline_new
    FOR EACH STATEMENT EXECUTE FUNCTION pipeline.report_input_trigger('1', '10');
DROP TRIGGER sneaky ON intruder_t;
INSERT INTO intruder_t VALUES ('2026-11-01');
RESET ROLE;
DROP TABLE intruder_t;
DROP ROLE report_intruder;

SELECT pipeline.drop_report('weekly_totals');
SELECT pipeline.drop_aggregate('sales_by_day');
SELECT pipeline.drop_report('top_products');
SELECT pipeline.drop_report('daily_store_sales', keep_output => true);
SELECT to_regclass('daily_store_sales') IS NOT NULL AS kept, to_regclass('top_products') IS NULL AS dropped;
SELECT count(*) FROM pg_trigger WHERE tgrelid = 'sales_fact'::regclass;
SELECT (SELECT count(*) FROM pipeline.reports) AS reports, (SELECT count(*) FROM pipeline.report_dirty) AS marks;
