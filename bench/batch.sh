#!/usr/bin/env bash
# Batch benchmark, in one run on one cluster:
#   (1) importing ROWS new rows from a postgres_fdw foreign table (another
#       database): a pg_pipeline table source (append by id, default batch
#       size, exactly-once with its watermark) versus the INSERT ... SELECT a
#       user would write by hand (one transaction, no watermark);
#   (2) refreshing a daily report over one year of sales after one new day
#       arrives: pipeline.refresh_report (recomputes the changed day) versus
#       REFRESH MATERIALIZED VIEW CONCURRENTLY of the same query.
# Each is measured ROUNDS times, taking turns; the medians are compared.
#
#   bash bench/batch.sh [ROWS]     (default 1000000; ROUNDS=n, default 3)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${PG_CLUSTER_CONF_ROOT:-}" ]; then
	bash test/install-deps
	bash test/build >/dev/null
	chmod -R a+rX . 2>/dev/null || true
	exec pg_virtualenv -t -v 15 -o shared_preload_libraries=pg_pipeline \
		-o max_worker_processes=16 -o shared_buffers=512MB -o max_wal_size=4GB \
		bash "$0" "$@"
fi

N=${1:-1000000}
ROUNDS=${ROUNDS:-3}
. test/lib/pg.sh
. bench/lib.sh

median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) * 1000 }'; }

echo "batch: $N rows, $ROUNDS rounds, $(nproc) cores, $(date -u +%Y-%m-%d)"
q "CREATE DATABASE pos" >/dev/null
q "CREATE DATABASE dw" >/dev/null
q pos "CREATE TABLE transactions (id bigint PRIMARY KEY, store integer, product text, amount numeric(10,2), sold_at timestamptz);
       INSERT INTO transactions SELECT i, i % 50, 'p' || (i % 500), (i % 10000) / 100.0,
              '2026-01-01'::timestamptz + i * interval '10 seconds' FROM generate_series(1, $N) i;
       VACUUM ANALYZE transactions"
q dw "CREATE EXTENSION pg_pipeline; CREATE EXTENSION postgres_fdw;
      CREATE SERVER pos FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '$PGHOST', port '$PGPORT', dbname 'pos');
      CREATE USER MAPPING FOR CURRENT_USER SERVER pos OPTIONS (user '$PGUSER', password '$PGPASSWORD');
      IMPORT FOREIGN SCHEMA public LIMIT TO (transactions) FROM SERVER pos INTO public;
      CREATE TABLE ours (LIKE transactions); CREATE TABLE by_hand (LIKE transactions);
      SELECT pipeline.create_table_source('import', 'transactions', 'ours', 'append', '{\"watermark_column\": \"id\"}')" >/dev/null

# --- (1) import
imp_ours=() imp_hand=()
for round in $(seq 1 "$ROUNDS"); do
	q dw "TRUNCATE ours, by_hand; SELECT pipeline.reset_table_source('import')" >/dev/null
	q dw "CHECKPOINT" >/dev/null
	t0=$(now)
	psql -X -q -d dw -c "CALL pipeline.run_table_source('import')"
	t1=$(now)
	q dw "CHECKPOINT" >/dev/null
	t2=$(now)
	q dw "INSERT INTO by_hand SELECT * FROM transactions" >/dev/null
	t3=$(now)
	check=$(q dw "SELECT (SELECT count(*) || '/' || sum(amount) FROM ours) = (SELECT count(*) || '/' || sum(amount) FROM by_hand)")
	[ "$check" = t ] || { echo "the imports differ" >&2; exit 1; }
	imp_ours+=("$(rate "$N" "$t0" "$t1")") imp_hand+=("$(rate "$N" "$t2" "$t3")")
	echo "round $round import: pg_pipeline ${imp_ours[-1]} rows/s, INSERT ... SELECT ${imp_hand[-1]} rows/s"
done

# --- (2) a daily report over one year
q dw "CREATE TABLE sales (id bigint, day date NOT NULL, store integer, amount numeric(10,2));
      INSERT INTO sales SELECT i, '2025-01-01'::date + (i % 365), i % 20, (i % 10000) / 100.0
        FROM generate_series(1, $N) i;
      CREATE INDEX ON sales (day); VACUUM ANALYZE sales" >/dev/null
query="SELECT day, store, count(*) AS sales, sum(amount) AS revenue FROM sales GROUP BY day, store"
q dw "SELECT pipeline.create_report('daily_report', \$\$$query\$\$,
        '{\"key\": [\"day\", \"store\"], \"partition_column\": \"day\", \"inputs\": {\"sales\": \"src.day\"}}');
      CREATE MATERIALIZED VIEW daily_mv AS $query;
      CREATE UNIQUE INDEX ON daily_mv (day, store)" >/dev/null
per_day=$((N / 365))
ref_ours=() ref_mv=()
for round in $(seq 1 "$ROUNDS"); do
	day="'2026-01-01'::date + $((round - 1))"
	q dw "INSERT INTO sales SELECT i, $day, i % 20, (i % 10000) / 100.0 FROM generate_series(1, $per_day) i" >/dev/null
	t0=$(now)
	q dw "SELECT pipeline.refresh_report('daily_report')" >/dev/null
	t1=$(now)
	q dw "REFRESH MATERIALIZED VIEW CONCURRENTLY daily_mv" >/dev/null
	t2=$(now)
	diff=$(q dw "SELECT count(*) FROM ((TABLE daily_report EXCEPT TABLE daily_mv) UNION ALL (TABLE daily_mv EXCEPT TABLE daily_report)) d")
	[ "$diff" = 0 ] || { echo "the report and the materialized view differ" >&2; exit 1; }
	ref_ours+=("$(ms "$t0" "$t1")") ref_mv+=("$(ms "$t1" "$t2")")
	echo "round $round refresh after one new day of $per_day rows: pg_pipeline ${ref_ours[-1]} ms, REFRESH MATERIALIZED VIEW CONCURRENTLY ${ref_mv[-1]} ms"
done

a=$(median "${imp_ours[@]}") b=$(median "${imp_hand[@]}") c=$(median "${ref_ours[@]}") d=$(median "${ref_mv[@]}")
echo "every round: both imports equal (count, sum); the report equals the materialized view"
printf '%-66s %12s\n' "(1) import $N rows over postgres_fdw, pg_pipeline table source" "$a rows/s" \
	"    INSERT ... SELECT by hand" "$b rows/s" \
	"(2) refresh a 1-year daily report after one new day, pg_pipeline" "$c ms" \
	"    REFRESH MATERIALIZED VIEW CONCURRENTLY" "$d ms"
awk -v a="$a" -v b="$b" -v c="$c" -v d="$d" \
	'BEGIN { printf "medians: (1) pg_pipeline / by hand = %.2fx   (2) materialized view / pg_pipeline = %.1fx\n", a / b, d / c }'
