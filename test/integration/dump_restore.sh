# pg_dump of a database with an aggregate, a report and a table source,
# restored into another cluster where the owner role has another OID: the
# definitions come back and their triggers work as the owner.
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/tap.sh
. test/lib/pg.sh

plan 4
db=dump_src
export DUMP_FILE
DUMP_FILE=$(mktemp /tmp/pipeline_dump_XXXX)
chmod a+r "$DUMP_FILE"

q "DROP ROLE IF EXISTS dumper" >/dev/null 2>&1
q "CREATE ROLE dumper LOGIN"
fresh_database $db
q $db "CREATE SCHEMA shop AUTHORIZATION dumper"
q $db "SET ROLE dumper; SET search_path = shop;
       CREATE TABLE orders (id bigint, day date, amount numeric);
       CREATE TABLE sales (id bigint, day date, amount numeric);
       INSERT INTO orders SELECT i, '2026-11-01'::date + i % 3, i FROM generate_series(1, 30) i;
       SELECT pipeline.create_table_source('orders', 'orders', 'sales', 'append', '{\"watermark_column\": \"id\"}');
       SELECT pipeline.create_aggregate('daily', \$\$SELECT day, count(*) AS n, sum(amount) AS total FROM sales GROUP BY day\$\$);
       SELECT pipeline.create_report('weekly', \$\$SELECT date_trunc('week', day)::date AS week, sum(total) AS total FROM daily GROUP BY 1\$\$,
           '{\"partition_column\": \"week\", \"inputs\": {\"daily\": \"date_trunc(''week'', src.day)::date\"}}')" >/dev/null
psql -X -q -d $db -c "SET ROLE dumper" -c "CALL pipeline.run_table_source('orders')" \
	-c "SELECT pipeline.refresh_report('weekly')" >/dev/null
pg_dump -Fc -f "$DUMP_FILE" $db
ok $? "pg_dump of a database with pipelines succeeds"

restore() {
	. test/lib/tap.sh
	. test/lib/pg.sh
	TAP_COUNT=1
	# other roles first: dumper's OID differs from the dumped one
	for r in filler1 filler2 filler3; do q "CREATE ROLE $r"; done
	q "CREATE ROLE dumper LOGIN"
	q "CREATE DATABASE dump_dst"
	pg_restore -d dump_dst "$DUMP_FILE" 2>&1 | grep -v 'already exists' >&2
	is "$(q dump_dst "SELECT (SELECT string_agg(name, ',') FROM pipeline.table_sources) || ' ' ||
	                        (SELECT string_agg(name, ',') FROM pipeline.aggregates) || ' ' ||
	                        (SELECT string_agg(name || ':' || owner, ',') FROM pipeline.reports) || ' ' ||
	                        (SELECT watermark FROM pipeline.table_sources)")" "orders daily weekly:dumper 30" \
		"the definitions and the watermark come back, owned by the same role"
	psql -X -q -d dump_dst -c "SET ROLE dumper" \
		-c "INSERT INTO shop.orders SELECT i, '2026-11-09', 1 FROM generate_series(31, 40) i" \
		-c "CALL pipeline.run_table_source('orders')" >/dev/null 2>&1
	is "$(q dump_dst "SELECT n || '/' || total FROM shop.daily WHERE day = '2026-11-09'")" "10/10" \
		"the restored aggregate's trigger folds new rows as its owner"
	is "$(q dump_dst "SET ROLE dumper; SELECT kind || ' ' || partitions FROM pipeline.refresh_report('weekly')")" "changed 1" \
		"the restored report's trigger marked the changed week"
	done_testing
}
export -f restore
with_cluster -o shared_preload_libraries=pg_pipeline -- bash -c restore
status=$?

rm -f "$DUMP_FILE"
q "DROP DATABASE $db WITH (FORCE)" >/dev/null
q "DROP ROLE dumper" >/dev/null
[ "$status" -eq 0 ] && done_testing
