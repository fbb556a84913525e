#!/usr/bin/env bash
# Aggregation benchmark: keeping a 1,000-group, 4-aggregate summary of an
# event table current while events arrive in batches, three ways, measured
# side by side on the same cluster, at a base table of BASE rows and of
# 10 x BASE rows:
#   (1) pg_pipeline: pipeline.create_aggregate (incremental folding)
#   (2) REFRESH MATERIALIZED VIEW after each batch
#   (3) a hand-written FOR EACH ROW trigger doing INSERT ... ON CONFLICT DO UPDATE
# It prints events/s and mean per-batch latency for each, the ratios, and how
# each method's batch latency grows when the base table grows 10x; "plain" is
# the same inserts with no summary kept, for reference.
#
#   bash bench/aggregate.sh [BASE] [BATCHES] [BATCH_SIZE]   (default 1000000 10 10000)
set -euo pipefail
cd "$(dirname "$0")/.."

. bench/lib.sh
in_bench_cluster "$0" "$@" -- shared_buffers=1GB max_wal_size=8GB work_mem=64MB

BASE=${1:-1000000}
BATCHES=${2:-10}
BATCH=${3:-10000}
. test/lib/pg.sh

echo "aggregate: 1000 groups, 4 aggregates, $BATCHES batches of $BATCH events, base $BASE and $((BASE * 10)) rows, $(nproc) cores, $(date -u +%Y-%m-%d)"
q "CREATE DATABASE bench" >/dev/null
q bench "CREATE EXTENSION pg_pipeline"
q bench "CREATE TABLE results (method text, base bigint, batch int, ms float8)"

# events: 1000 groups (store_id), amounts, integers, timestamps
events() { # COUNT
	echo "SELECT (random() * 999)::int, round((random() * 100)::numeric, 2), (random() * 1000)::int,
	             '2026-11-01'::timestamptz + random() * interval '30 days'
	        FROM generate_series(1, $1)"
}

# run_batches METHOD BASE TABLE EXTRA_SQL: BATCHES timed batches, each committed
run_batches() {
	q bench "DO \$\$
	DECLARE t0 timestamptz;
	BEGIN
	  FOR b IN 1 .. $BATCHES LOOP
	    t0 := clock_timestamp();
	    INSERT INTO $3 $(events "$BATCH");
	    $4
	    COMMIT;
	    INSERT INTO results VALUES ('$1', $2, b, extract(epoch FROM clock_timestamp() - t0) * 1000);
	    COMMIT;
	  END LOOP;
	END \$\$" >/dev/null
}

for base in "$BASE" $((BASE * 10)); do
	echo "base $base rows: loading..."
	q bench "SELECT pipeline.drop_aggregate(name) FROM pipeline.aggregates" >/dev/null
	for t in plain ours mv trig; do
		q bench "DROP MATERIALIZED VIEW IF EXISTS mv_summary" >/dev/null 2>&1
		q bench "DROP TABLE IF EXISTS ${t}_events CASCADE" >/dev/null
		q bench "CREATE TABLE ${t}_events (store_id int, amount numeric(10,2), qty int, ts timestamptz)"
		q bench "INSERT INTO ${t}_events $(events "$base")" >/dev/null
	done
	q bench "DROP TABLE IF EXISTS trig_summary" >/dev/null
	q bench "VACUUM ANALYZE" >/dev/null

	run_batches plain "$base" plain_events ""

	# (1) pg_pipeline
	t0=$(date +%s.%N)
	q bench "SELECT pipeline.create_aggregate('ours_summary', \$\$SELECT store_id, count(*) AS n, sum(amount) AS total,
	           avg(amount) AS mean, max(qty) AS top FROM ours_events GROUP BY store_id\$\$)" >/dev/null
	backfill=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
	run_batches ours "$base" ours_events ""

	# (2) materialized view refreshed after each batch
	q bench "CREATE MATERIALIZED VIEW mv_summary AS SELECT store_id, count(*) AS n, sum(amount) AS total,
	           avg(amount) AS mean, max(qty) AS top FROM mv_events GROUP BY store_id"
	run_batches mv "$base" mv_events "REFRESH MATERIALIZED VIEW mv_summary;"

	# (3) hand-written row trigger upserting a summary table
	q bench "CREATE TABLE trig_summary (store_id int PRIMARY KEY, n bigint, total numeric, mean numeric, top int)"
	q bench "INSERT INTO trig_summary SELECT store_id, count(*), sum(amount), avg(amount), max(qty) FROM trig_events GROUP BY store_id" >/dev/null
	q bench "CREATE OR REPLACE FUNCTION trig_upsert() RETURNS trigger LANGUAGE plpgsql AS \$\$
	BEGIN
	  INSERT INTO trig_summary AS s VALUES (NEW.store_id, 1, NEW.amount, NEW.amount, NEW.qty)
	  ON CONFLICT (store_id) DO UPDATE SET n = s.n + 1, total = s.total + EXCLUDED.total,
	    mean = (s.total + EXCLUDED.total) / (s.n + 1), top = greatest(s.top, EXCLUDED.top);
	  RETURN NULL;
	END \$\$"
	q bench "CREATE TRIGGER upsert AFTER INSERT ON trig_events FOR EACH ROW EXECUTE FUNCTION trig_upsert()"
	run_batches trig "$base" trig_events ""

	# all three agree with the events
	check=$(q bench "SELECT (SELECT sum(n) FROM ours_summary) || ' ' || (SELECT sum(n) FROM mv_summary) || ' ' ||
	                        (SELECT sum(n) FROM trig_summary) || ' ' || (SELECT count(*) FROM ours_events)")
	echo "  rows counted (ours mv trigger events): $check; backfill of pg_pipeline's aggregate: ${backfill} s"
	q bench "SELECT count(*) FROM pipeline.check_aggregate('ours_summary')" | grep -qx 0 ||
		{ echo "pg_pipeline's aggregate differs from its query" >&2; exit 1; }
done

q bench "SELECT method, base, round(avg(ms)::numeric, 1) AS ms_per_batch,
                round($BATCH / (avg(ms) / 1000))::bigint AS events_per_s
           FROM results GROUP BY 1, 2 ORDER BY 2, 1" |
	awk -F'|' '{ printf "%-6s base %10d: %9.1f ms/batch %12d events/s\n", $1, $2, $3, $4 }'
q bench "WITH r AS (SELECT method, base, avg(ms) AS ms FROM results GROUP BY 1, 2)
         SELECT 'at base ' || b.base || ': (1)/(2) = ' || round((mv.ms / o.ms)::numeric, 1) || 'x, (1)/(3) = ' || round((t.ms / o.ms)::numeric, 1) || 'x'
           FROM (SELECT DISTINCT base FROM r) b
           JOIN r o ON o.base = b.base AND o.method = 'ours'
           JOIN r mv ON mv.base = b.base AND mv.method = 'mv'
           JOIN r t ON t.base = b.base AND t.method = 'trig' ORDER BY b.base"
q bench "WITH r AS (SELECT method, base, avg(ms) AS ms FROM results GROUP BY 1, 2)
         SELECT 'growth of batch latency, base x10: ' || string_agg(a.method || ' ' || round((b.ms / a.ms)::numeric, 2) || 'x', ', ' ORDER BY a.method)
           FROM r a JOIN r b ON a.method = b.method AND b.base = a.base * 10"
