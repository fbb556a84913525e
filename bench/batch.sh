#!/usr/bin/env bash
# Batch benchmark, in one run on one cluster:
#   (1) importing ROWS new rows from a postgres_fdw foreign table (another
#       database): a pg_pipeline table source (append by id, default batch
#       size and fetch size, exactly-once with its watermark) versus the
#       incremental INSERT ... SELECT ... WHERE id > (SELECT max(id) ...) a
#       user would write by hand (one transaction, not restartable mid-way);
#       for reference, the plain copy of everything, and the hand-written
#       import with the server tuned to the table source's fetch_size;
#   (2) refreshing a daily report over one year of sales after one new day
#       arrives: pipeline.refresh_report (recomputes the changed day) versus
#       REFRESH MATERIALIZED VIEW CONCURRENTLY of the same query.
# Each is measured ROUNDS times, taking turns; the medians are compared.
#
#   bash bench/batch.sh [ROWS] [REPORT_ROWS]
#     ROWS: rows imported in (1), default 1000000
#     REPORT_ROWS: one year of sales under the report in (2), default 10000000
#     (27,400 a day, a small chain); ROUNDS=n turns of each, default 3
set -euo pipefail
cd "$(dirname "$0")/.."

. bench/lib.sh
in_bench_cluster "$0" "$@" -- max_worker_processes=16 shared_buffers=512MB max_wal_size=4GB

N=${1:-1000000}
R=${2:-10000000}
ROUNDS=${ROUNDS:-3}
. test/lib/pg.sh

median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) * 1000 }'; }

echo "batch: import $N rows, report over $R rows, $ROUNDS rounds, $(nproc) cores, $(date -u +%Y-%m-%d)"
q "CREATE DATABASE pos" >/dev/null
q "CREATE DATABASE dw" >/dev/null
q pos "CREATE TABLE transactions (id bigint PRIMARY KEY, store integer, product text, amount numeric(10,2), sold_at timestamptz);
       INSERT INTO transactions SELECT i, i % 50, 'p' || (i % 500), (i % 10000) / 100.0,
              '2026-01-01'::timestamptz + i * interval '10 seconds' FROM generate_series(1, $N) i"
q pos "VACUUM ANALYZE transactions"
q dw "CREATE EXTENSION pg_pipeline; CREATE EXTENSION postgres_fdw;
      CREATE SERVER pos FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '$PGHOST', port '$PGPORT', dbname 'pos');
      CREATE USER MAPPING FOR CURRENT_USER SERVER pos OPTIONS (user '$PGUSER', password '$PGPASSWORD');
      IMPORT FOREIGN SCHEMA public LIMIT TO (transactions) FROM SERVER pos INTO public;
      CREATE TABLE ours (LIKE transactions); CREATE TABLE by_hand (LIKE transactions);
      SELECT pipeline.create_table_source('import', 'transactions', 'ours', 'append', '{\"watermark_column\": \"id\"}')" >/dev/null

# --- (1) import; times are taken inside one session (no client start-up)
# session SQL: the milliseconds between the \gset marks t0, t1, t2
timed() {
	psql -X -q -At -v ON_ERROR_STOP=1 -d dw <<EOT | tail -n 1
SELECT clock_timestamp() AS t0 \gset
$1;
SELECT clock_timestamp() AS t1 \gset
$2;
SELECT clock_timestamp() AS t2 \gset
SELECT round(1000 * extract(epoch FROM :'t1'::timestamptz - :'t0'::timestamptz), 1) || ' ' ||
       round(1000 * extract(epoch FROM :'t2'::timestamptz - :'t1'::timestamptz), 1);
EOT
}
# the hand-written incremental import a user would schedule: the rows after
# the largest id already copied (no watermark of its own, not restartable
# mid-way); and, for reference, the plain copy of everything
by_hand="INSERT INTO by_hand SELECT * FROM transactions WHERE id > (SELECT coalesce(max(id), 0) FROM by_hand)"
imp_ours=() imp_hand=() imp_plain=() imp_tuned=()
for round in $(seq 1 "$ROUNDS"); do
	q dw "TRUNCATE ours, by_hand; SELECT pipeline.reset_table_source('import')" >/dev/null
	q dw "CHECKPOINT" >/dev/null
	# who goes first warms the caches for the other: take turns
	if [ $((round % 2)) = 1 ]; then
		read -r a b <<<"$(timed "CALL pipeline.run_table_source('import')" "$by_hand")"
	else
		read -r b a <<<"$(timed "$by_hand" "CALL pipeline.run_table_source('import')")"
	fi
	check=$(q dw "SELECT (SELECT count(*) || '/' || sum(amount) FROM ours) = (SELECT count(*) || '/' || sum(amount) FROM by_hand)")
	[ "$check" = t ] || { echo "the imports differ" >&2; exit 1; }
	q dw "TRUNCATE by_hand; CHECKPOINT" >/dev/null
	read -r c _ <<<"$(timed "INSERT INTO by_hand SELECT * FROM transactions" "SELECT 1")"
	q dw "TRUNCATE by_hand; ALTER SERVER pos OPTIONS (ADD fetch_size '10000'); CHECKPOINT" >/dev/null
	read -r e _ <<<"$(timed "$by_hand" "SELECT 1")"
	q dw "ALTER SERVER pos OPTIONS (DROP fetch_size)" >/dev/null
	imp_ours+=("$(awk -v n="$N" -v t="$a" 'BEGIN { printf "%.0f", n / t * 1000 }')")
	imp_hand+=("$(awk -v n="$N" -v t="$b" 'BEGIN { printf "%.0f", n / t * 1000 }')")
	imp_plain+=("$(awk -v n="$N" -v t="$c" 'BEGIN { printf "%.0f", n / t * 1000 }')")
	imp_tuned+=("$(awk -v n="$N" -v t="$e" 'BEGIN { printf "%.0f", n / t * 1000 }')")
	echo "round $round import: pg_pipeline ${imp_ours[-1]} rows/s, incremental INSERT ... SELECT by hand ${imp_hand[-1]} rows/s (plain copy of all: ${imp_plain[-1]} rows/s; by hand with the server's fetch_size 10000: ${imp_tuned[-1]} rows/s)"
done

# --- (2) a daily report over one year
q dw "CREATE TABLE sales (id bigint, day date NOT NULL, store integer, amount numeric(10,2));
      INSERT INTO sales SELECT i, '2025-01-01'::date + (i % 365), i % 20, (i % 10000) / 100.0
        FROM generate_series(1, $R) i;
      CREATE INDEX ON sales (day)" >/dev/null
q dw "VACUUM ANALYZE sales"
query="SELECT day, store, count(*) AS sales, sum(amount) AS revenue FROM sales GROUP BY day, store"
q dw "SELECT pipeline.create_report('daily_report', \$\$$query\$\$,
        '{\"key\": [\"day\", \"store\"], \"partition_column\": \"day\", \"inputs\": {\"sales\": \"src.day\"}}');
      CREATE MATERIALIZED VIEW daily_mv AS $query;
      CREATE UNIQUE INDEX ON daily_mv (day, store)" >/dev/null
per_day=$((R / 365))
ref_ours=() ref_mv=()
for round in $(seq 1 "$ROUNDS"); do
	day="'2026-01-01'::date + $((round - 1))"
	t0=$(now)
	q dw "INSERT INTO sales SELECT i, $day, i % 20, (i % 10000) / 100.0 FROM generate_series(1, $per_day) i" >/dev/null
	t1=$(now)
	read -r a b <<<"$(timed "SELECT pipeline.refresh_report('daily_report')" "REFRESH MATERIALIZED VIEW CONCURRENTLY daily_mv")"
	diff=$(q dw "SELECT count(*) FROM ((TABLE daily_report EXCEPT TABLE daily_mv) UNION ALL (TABLE daily_mv EXCEPT TABLE daily_report)) d")
	[ "$diff" = 0 ] || { echo "the report and the materialized view differ" >&2; exit 1; }
	ref_ours+=("$a") ref_mv+=("$b")
	echo "round $round one new day of $per_day rows (insert with the report's trigger: $(ms "$t0" "$t1") ms incl. psql start-up): refresh pg_pipeline $a ms, REFRESH MATERIALIZED VIEW CONCURRENTLY $b ms"
done

a=$(median "${imp_ours[@]}") b=$(median "${imp_hand[@]}") p=$(median "${imp_plain[@]}") t=$(median "${imp_tuned[@]}")
c=$(median "${ref_ours[@]}") d=$(median "${ref_mv[@]}")
echo "every round: both imports equal (count, sum); the report equals the materialized view"
printf '%-66s %12s\n' "(1) import $N rows over postgres_fdw, pg_pipeline table source" "$a rows/s" \
	"    incremental INSERT ... SELECT ... WHERE id > max(id) by hand" "$b rows/s" \
	"    (plain INSERT ... SELECT of everything)" "$p rows/s" \
	"    (by hand, the server's fetch_size set to 10000)" "$t rows/s" \
	"(2) refresh a daily report over 1 year ($R rows) after one new day, pg_pipeline" "$c ms" \
	"    REFRESH MATERIALIZED VIEW CONCURRENTLY" "$d ms"
awk -v a="$a" -v b="$b" -v c="$c" -v d="$d" \
	'BEGIN { printf "medians: (1) pg_pipeline / by hand = %.2fx   (2) materialized view / pg_pipeline = %.1fx\n", a / b, d / c }'
