# The retail case study end to end: a POS database reached over postgres_fdw,
# a nightly job graph import -> clean -> (daily sales aggregate) -> reports,
# totals equal to the source's; a second night recomputes only its own day;
# a refresh beside a long-running reader neither waits for it nor changes
# what it reads.
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/tap.sh
. test/lib/pg.sh

plan 10
pos=retail_pos
dw=retail_dw

# etl: the non-superuser that owns the pipeline (jobs run as their owner)
qe() { q $dw "SET ROLE etl; SET search_path = retail, public; $1"; }
# a CALL that commits must be a statement of its own
qcall() { psql -X -q -v ON_ERROR_STOP=1 -d $dw -c "SET ROLE etl" -c "CALL $1"; }

fresh_database $pos
fresh_database $dw
q $pos "CREATE TABLE transactions (id bigint PRIMARY KEY, store_id integer, product_id integer, qty integer,
                                   amount numeric(10,2), sold_at timestamptz)"
# a night's sales: 6000 rows of which 1 % have a negative quantity and 0.5 % no store
night() { # night DAY FIRST_ID
	q $pos "INSERT INTO transactions
	        SELECT $2 + i, CASE WHEN i % 200 = 7 THEN NULL ELSE i % 10 END, i % 40,
	               CASE WHEN i % 100 = 3 THEN -1 ELSE 1 + i % 3 END, (1 + i % 3) * (5 + i % 40) * 0.25,
	               '$1'::timestamptz + (i * 14) * interval '1 second'
	          FROM generate_series(0, 5999) i"
}
night '2026-11-27 00:00+00' 0
night '2026-11-28 00:00+00' 6000

q "DROP ROLE IF EXISTS etl" >/dev/null 2>&1
q "CREATE ROLE etl LOGIN"
q $dw "CREATE SCHEMA retail AUTHORIZATION etl; CREATE EXTENSION postgres_fdw;
       CREATE SERVER pos FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '$PGHOST', port '$PGPORT', dbname '$pos');
       GRANT USAGE ON FOREIGN SERVER pos TO etl;
       CREATE USER MAPPING FOR etl SERVER pos OPTIONS (user '$PGUSER', password '$PGPASSWORD')"
qe "IMPORT FOREIGN SCHEMA public LIMIT TO (transactions) FROM SERVER pos INTO retail;
    ALTER FOREIGN TABLE transactions RENAME TO pos_transactions;
    CREATE TABLE staging_sales (id bigint, store_id integer, product_id integer, qty integer, amount numeric(10,2), sold_at timestamptz);
    CREATE TABLE sales (id bigint PRIMARY KEY, store_id integer NOT NULL, product_id integer NOT NULL,
                        qty integer NOT NULL CHECK (qty > 0), amount numeric(10,2) NOT NULL, day date NOT NULL)"
qe "SELECT pipeline.create_table_source('pos_import', 'pos_transactions', 'staging_sales', 'append',
        '{\"watermark_column\": \"id\", \"batch_size\": 5000}');
    SELECT pipeline.create_table_source('clean_sales', 'staging_sales', 'sales', 'append',
        '{\"watermark_column\": \"id\", \"filter\": \"src.store_id IS NOT NULL\",
          \"columns\": {\"id\": \"src.id\", \"store_id\": \"src.store_id\", \"product_id\": \"src.product_id\",
                        \"qty\": \"src.qty\", \"amount\": \"src.amount\",
                        \"day\": \"(src.sold_at AT TIME ZONE ''UTC'')::date\"}}');
    SELECT pipeline.create_aggregate('daily_sales', \$\$
        SELECT store_id, product_id, day, count(*) AS sales, sum(qty) AS units, sum(amount) AS revenue
          FROM sales GROUP BY store_id, product_id, day\$\$);
    SELECT pipeline.create_report('daily_sales_report', \$\$
        SELECT day, store_id, sum(sales) AS sales, sum(units) AS units, sum(revenue) AS revenue
          FROM daily_sales GROUP BY day, store_id\$\$,
        '{\"key\": [\"day\", \"store_id\"], \"partition_column\": \"day\", \"inputs\": {\"daily_sales\": \"src.day\"}}');
    SELECT pipeline.create_report('top_products', \$\$
        SELECT product_id, sum(revenue) AS revenue, rank() OVER (ORDER BY sum(revenue) DESC, product_id) AS rank
          FROM daily_sales GROUP BY product_id\$\$, '{\"key\": [\"product_id\"]}')" >/dev/null
qe "SELECT pipeline.schedule_job('retail_import', '0 2 * * *', 'CALL pipeline.run_table_source(''pos_import'')',
        '{\"atomic\": false, \"time_zone\": \"UTC\"}');
    SELECT pipeline.schedule_job('retail_clean', NULL, 'CALL pipeline.run_table_source(''clean_sales'')',
        '{\"atomic\": false, \"depends_on\": [\"retail_import\"]}');
    SELECT pipeline.schedule_job('retail_reports', NULL,
        'SELECT pipeline.refresh_report(''daily_sales_report''); SELECT pipeline.refresh_report(''top_products'')',
        '{\"depends_on\": [\"retail_clean\"]}')" >/dev/null

# the night of 2026-11-28 (its logical time 02:00 on the 29th)
graph_done() { # graph_done LOGICAL_TIME
	wait_for_sql 60 $dw "SELECT count(*) = 1 FROM pipeline.job_runs r JOIN pipeline.jobs j ON j.id = r.job_id
	                     WHERE j.name = 'retail_reports' AND r.scheduled_for = '$1' AND r.state = 'succeeded'"
}
qe "SELECT pipeline.backfill_job('retail_import', '2026-11-29 01:00+00', '2026-11-29 03:00+00')" >/dev/null
graph_done '2026-11-29 02:00+00'
ok $? "the nightly graph import -> clean -> reports ran, each task after the one before"

good="store_id IS NOT NULL AND qty > 0"
is "$(qe "SELECT count(*) || ' ' || sum(amount) FROM sales")" \
	"$(q $pos "SELECT count(*) || ' ' || sum(amount) FROM transactions WHERE store_id IS NOT NULL AND qty > 0")" \
	"the clean sales hold every good source row once"
is "$(qe "SELECT string_agg(day || ':' || sales || '/' || units || '/' || revenue, ' ' ORDER BY day)
          FROM (SELECT day, sum(sales) AS sales, sum(units) AS units, sum(revenue) AS revenue FROM daily_sales_report GROUP BY day) d")" \
	"$(q $pos "SET timezone = 'UTC'; SELECT string_agg(day || ':' || n || '/' || u || '/' || r, ' ' ORDER BY day)
	          FROM (SELECT sold_at::date AS day, count(*) AS n, sum(qty) AS u, sum(amount) AS r FROM transactions
	                WHERE $good GROUP BY 1) d")" \
	"the daily sales report's totals per day equal the source's"
is "$(qe "SELECT string_agg(product_id || '=' || revenue, ' ' ORDER BY rank) FROM top_products WHERE rank <= 5")" \
	"$(q $pos "SELECT string_agg(product_id || '=' || r, ' ' ORDER BY r DESC, product_id) FROM
	          (SELECT product_id, sum(amount) AS r FROM transactions WHERE $good GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5) t")" \
	"the top-products report matches the source"
is "$(qe "SELECT count(*) FROM pipeline.table_dead_letters WHERE source_name = 'clean_sales'")" \
	"$(q $pos "SELECT count(*) FROM transactions WHERE NOT ($good)")" \
	"every rejected row (no store, or a negative quantity) is a dead letter with its reason"

# the next night: only its day is recomputed in the daily report
night '2026-11-29 00:00+00' 12000
qe "SELECT pipeline.backfill_job('retail_import', '2026-11-30 01:00+00', '2026-11-30 03:00+00')" >/dev/null
graph_done '2026-11-30 02:00+00'
is "$(qe "SELECT kind || ' ' || partitions || ' ' || rows_deleted || ' ' || rows_inserted FROM pipeline.report_refreshes
          WHERE report_id = pipeline.report_id('daily_sales_report') ORDER BY id DESC LIMIT 1")" "changed 1 0 10" \
	"the second night's refresh recomputed one day (10 stores), nothing else"
is "$(qe "SELECT sum(revenue) FROM daily_sales_report")" \
	"$(q $pos "SELECT sum(amount) FROM transactions WHERE $good")" "and the report still equals the source"

# a long-running reader: the refresh neither waits for it nor changes what it reads
night '2026-11-30 00:00+00' 18000
qcall "pipeline.run_table_source('pos_import')"
qcall "pipeline.run_table_source('clean_sales')"
before=$(qe "SELECT sum(revenue) FROM daily_sales_report")
q $dw "SELECT sum(revenue), pg_sleep(5) FROM retail.daily_sales_report" >/tmp/retail_reader.$$ 2>&1 &
reader=$!
sleep 1
t0=$SECONDS
qe "SELECT pipeline.refresh_report('daily_sales_report')" >/dev/null
t1=$SECONDS
kill -0 "$reader" 2>/dev/null
ok $? "the refresh committed while the reader's query was still running ($((t1 - t0)) s)"
wait "$reader"
is "$(cut -d'|' -f1 /tmp/retail_reader.$$)" "$before" "and the reader saw the report as it was when it started"
is "$(qe "SELECT sum(revenue) FROM daily_sales_report")" \
	"$(q $pos "SELECT sum(amount) FROM transactions WHERE $good")" "the refreshed report holds the new night too"
rm -f /tmp/retail_reader.$$

q "DROP DATABASE $dw WITH (FORCE)" >/dev/null
q "DROP DATABASE $pos WITH (FORCE)" >/dev/null
q "DROP ROLE etl" >/dev/null
done_testing
