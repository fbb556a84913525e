# Table sources over real foreign tables: postgres_fdw to another database
# and file_fdw over CSV files.  Exactly once across an immediate shutdown
# between batches; an unreachable server fails cleanly and a scheduled job
# retries it; bad rows become dead letters.
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/tap.sh
. test/lib/pg.sh

plan 14
pos=ts_pos
dw=ts_dw

fresh_database $pos
fresh_database $dw
q $pos "CREATE TABLE transactions (id bigint PRIMARY KEY, store integer, product text, amount numeric(10,2), sold_at timestamptz);
        INSERT INTO transactions SELECT i, i % 20, 'p' || (i % 50), (i % 1000) / 10.0,
               '2026-11-01'::timestamptz + i * interval '1 second' FROM generate_series(1, 200000) i"
q $dw "CREATE EXTENSION postgres_fdw"
q $dw "CREATE SERVER pos FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '$PGHOST', port '$PGPORT', dbname '$pos')"
q $dw "CREATE USER MAPPING FOR CURRENT_USER SERVER pos OPTIONS (user '$PGUSER', password '$PGPASSWORD')"
q $dw "CREATE SCHEMA pos_remote; IMPORT FOREIGN SCHEMA public LIMIT TO (transactions) FROM SERVER pos INTO pos_remote"
# no primary key on the target: a doubled row would show
q $dw "CREATE TABLE sales (id bigint, store integer, product text, amount numeric(10,2), sold_at timestamptz)"
q $dw "SELECT pipeline.create_table_source('pos', 'pos_remote.transactions', 'sales', 'append',
        '{\"watermark_column\": \"id\", \"batch_size\": 2000}')" >/dev/null

# --- a crash between batches: an immediate shutdown while the import runs
psql -X -q -d $dw -c "CALL pipeline.run_table_source('pos')" >/dev/null 2>&1 &
wait_for_sql 30 $dw "SELECT count(*) >= 20000 FROM sales"
restart_cluster immediate >/dev/null 2>&1
wait
partial=$(q $dw "SELECT count(*) || ' ' || count(DISTINCT id) || ' ' || (max(id) = (SELECT watermark::bigint FROM pipeline.table_sources))::text FROM sales")
like "$partial" '^([0-9]+) \1 true$' "after an immediate shutdown mid-run, the committed batches end exactly at the watermark"
[ "${partial%% *}" -lt 200000 ] || diag "the import had finished before the shutdown"
q $dw "CALL pipeline.run_table_source('pos')"
is "$(q $dw "SELECT count(*) || ' ' || count(DISTINCT id) || ' ' || sum(amount) FROM sales")" \
	"$(q $pos "SELECT count(*) || ' ' || count(DISTINCT id) || ' ' || sum(amount) FROM transactions")" \
	"the next run resumes at the watermark: every source row once, totals equal"
is "$(q $dw "SELECT last_state || ' ' || watermark FROM pipeline.table_source_status")" "succeeded 200000" \
	"the status shows the run and the watermark"

# --- new and late rows: append takes only what is after the watermark;
# the source server's log shows the fetches: 10000 rows per round trip
# (postgres_fdw's default is 100), and the foreign table left as it was
q $pos "INSERT INTO transactions SELECT i, 1, 'late', 1, now() FROM generate_series(200001, 200100) i"
q "ALTER DATABASE $pos SET log_statement = 'all'"
log_start=$(stat -c %s "$(server_log)")
q $dw "CALL pipeline.run_table_source('pos')"
q "ALTER DATABASE $pos RESET log_statement"
is "$(q $dw "SELECT count(*) FROM sales")" 200100 "a second run imports the 100 new rows only"
is "$(tail -c +"$((log_start + 1))" "$(server_log)" | grep -o 'FETCH [0-9]* FROM' | sort -u | tr '\n' ' ')" "FETCH 10000 FROM " \
	"it reads the foreign table 10000 rows per round trip"
is "$(q $dw "SELECT ftoptions::text FROM pg_foreign_table WHERE ftrelid = 'pos_remote.transactions'::regclass")" \
	"{schema_name=public,table_name=transactions}" "the foreign table itself is unchanged"

# --- an unreachable server: a clear error, nothing partial, a job retries it
q $dw "ALTER SERVER pos OPTIONS (SET port '1')"
q $pos "INSERT INTO transactions SELECT i, 2, 'more', 2, now() FROM generate_series(200101, 200200) i"
err=$(q $dw "CALL pipeline.run_table_source('pos')" 2>&1)
like "$err" 'table source "pos" failed: could not connect to server "pos"' "a run against an unreachable server fails with a clear error"
is "$(q $dw "SELECT last_state || ' ' || (last_error LIKE 'could not connect to server \"pos\"%')::text || ' ' || watermark FROM pipeline.table_source_status")" \
	"failed true 200100" "the status shows the failure, and the watermark did not move"
is "$(q $dw "SELECT count(*) FROM sales")" 200100 "nothing partial was stored"
# jobs run as their owner, a role that can log in (not a superuser): it has
# its own source, starting where the first one stopped
q $dw "CREATE ROLE etl LOGIN; GRANT USAGE ON SCHEMA pos_remote TO etl;
        GRANT SELECT ON pos_remote.transactions TO etl; GRANT SELECT, INSERT ON sales TO etl;
        CREATE USER MAPPING FOR etl SERVER pos OPTIONS (user '$PGUSER', password '$PGPASSWORD')"
q $dw "SET ROLE etl; SELECT pipeline.create_table_source('pos_etl', 'pos_remote.transactions', 'sales', 'append',
        '{\"watermark_column\": \"id\"}'); SELECT pipeline.reset_table_source('pos_etl', '200100')" >/dev/null
q $dw "SET ROLE etl; SELECT pipeline.schedule_job('import_pos', NULL, 'CALL pipeline.run_table_source(''pos_etl'')',
        '{\"atomic\": false, \"max_attempts\": 10, \"retry_delay\": \"1 second\", \"max_retry_delay\": \"1 second\"}');
        SELECT pipeline.run_job('import_pos')" >/dev/null
wait_for_sql 30 $dw "SELECT count(*) >= 2 FROM pipeline.job_runs r JOIN pipeline.jobs j ON j.id = r.job_id WHERE j.name = 'import_pos' AND r.state = 'failed'"
q $dw "ALTER SERVER pos OPTIONS (SET port '$PGPORT')"
wait_for_sql 30 $dw "SELECT count(*) = 1 FROM pipeline.job_runs r JOIN pipeline.jobs j ON j.id = r.job_id WHERE j.name = 'import_pos' AND r.state = 'succeeded'"
ok $? "the job's retries fail while the server is away, and one succeeds once it is back"
is "$(q $dw "SELECT count(*) || ' ' || count(DISTINCT id) FROM sales")" "200200 200200" "and the rows it missed arrived once"

# --- file_fdw: a CSV file with bad rows; cleaning expressions and a filter
csv=$(mktemp /tmp/pos_XXXX.csv)
printf '%s\n' 'id,store,amount,sold_at' '1,1,10.50,2026-11-01 10:00:00+00' '2,1,abc,2026-11-01 10:01:00+00' \
	'3,2,-4,2026-11-01 10:02:00+00' '4,,7,2026-11-01 10:03:00+00' '5,3,12,2026-11-01 10:04:00+00' >"$csv"
chmod a+r "$csv"
q $dw "CREATE EXTENSION file_fdw"
q $dw "CREATE SERVER files FOREIGN DATA WRAPPER file_fdw"
q $dw "CREATE FOREIGN TABLE store_csv (id text, store text, amount text, sold_at text)
        SERVER files OPTIONS (filename '$csv', format 'csv', header 'true')"
q $dw "CREATE TABLE store_sales (id integer, store integer NOT NULL, amount numeric CHECK (amount >= 0), sold_at timestamptz)"
q $dw "SELECT pipeline.create_table_source('store_csv', 'store_csv', 'store_sales', 'append',
        '{\"watermark_column\": \"id\", \"filter\": \"src.store <> ''''\",
          \"columns\": {\"id\": \"src.id::int\", \"store\": \"src.store::int\", \"amount\": \"src.amount::numeric\",
                        \"sold_at\": \"src.sold_at::timestamptz\"}}')" >/dev/null
q $dw "CALL pipeline.run_table_source('store_csv')"
is "$(q $dw "SELECT string_agg(id || '/' || amount, ' ' ORDER BY id) FROM store_sales")" "1/10.50 5/12" \
	"file_fdw: the good rows of a CSV file land"
is "$(q $dw "SELECT string_agg((\"row\"->>'id') || ' ' || coalesce(sqlstate, '-') || ' ' || split_part(error, ':', 1), '; ' ORDER BY \"row\"->>'id')
             FROM pipeline.table_dead_letters WHERE source_name = 'store_csv'")" \
	'2 22P02 invalid input syntax for type numeric; 3 23514 new row for relation "store_sales" violates check constraint "store_sales_amount_check"; 4 - rejected by the filter' \
	"each bad row is a dead letter with its reason: a bad number, a CHECK violation, the filter"
is "$(q $dw "SELECT rows_imported || ' ' || rows_rejected FROM pipeline.table_source_status WHERE source = 'store_csv'")" \
	"2 3" "the run counts imported and rejected rows"

rm -f "$csv"
q "DROP DATABASE $dw WITH (FORCE)" >/dev/null
q "DROP DATABASE $pos WITH (FORCE)" >/dev/null
q "DROP ROLE etl" >/dev/null
done_testing
