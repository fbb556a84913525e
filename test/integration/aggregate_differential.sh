# Differential test of continuous aggregates: for random event streams (NULL
# keys and values, negative numbers, numerics, floats, late events) written
# in random batches by INSERT, COPY, UPDATE, DELETE and concurrent writers,
# and for a Kafka stream whose worker is killed mid-stream, the output table
# equals the same GROUP BY query run over all rows: exactly for integers and
# numerics, within 1e-9 relative for floats.
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/tap.sh
. test/lib/pg.sh
. test/lib/broker.sh

plan 15
db=agg_diff
fresh_database $db >/dev/null

# the same query as the aggregate, with integer and numeric columns only: an
# EXCEPT both ways must be empty, independently of pipeline.check_aggregate
exact_difference() {
	q $db "SELECT count(*) FROM (
	         (SELECT k1, k2, hour, n, n_int, sum_int, sum_num, max_num, any_pos, all_bits FROM live
	          EXCEPT ALL
	          SELECT k1, k2, date_trunc('hour', ts), count(*), count(v_int), sum(v_int), sum(v_num),
	                 max(v_num), bool_or(v_int > 0), bit_and(v_int)
	            FROM ev WHERE v_int IS DISTINCT FROM 13 GROUP BY 1, 2, 3)
	         UNION ALL
	         (SELECT k1, k2, date_trunc('hour', ts), count(*), count(v_int), sum(v_int), sum(v_num),
	                 max(v_num), bool_or(v_int > 0), bit_and(v_int)
	            FROM ev WHERE v_int IS DISTINCT FROM 13 GROUP BY 1, 2, 3
	          EXCEPT ALL
	          SELECT k1, k2, hour, n, n_int, sum_int, sum_num, max_num, any_pos, all_bits FROM live)) d"
}

# random rows: about 10 % NULL keys and values, negative values, late events
# (timestamps anywhere in the last 30 days), seeded per batch
random_rows() { # SEED COUNT
	echo "SELECT setseed($1 / 1000.0);
	      SELECT CASE WHEN random() < 0.1 THEN NULL ELSE (random() * 20)::int - 5 END,
	             CASE WHEN random() < 0.1 THEN NULL ELSE 'k' || (random() * 3)::int END,
	             CASE WHEN random() < 0.1 THEN NULL ELSE (random() * 2000)::int - 1000 END,
	             CASE WHEN random() < 0.1 THEN NULL ELSE round((random() * 2000 - 1000)::numeric, 3) END,
	             CASE WHEN random() < 0.1 THEN NULL ELSE (random() - 0.5) * 1e6 END,
	             '2026-11-30'::timestamptz - random() * interval '30 days'
	        FROM generate_series(1, $2)"
}

q $db "CREATE TABLE ev (k1 integer, k2 text, v_int integer, v_num numeric, v_float double precision, ts timestamptz)"
q $db "INSERT INTO ev $(random_rows 1 3000 | tail -n +2)" >/dev/null
q $db "SELECT pipeline.create_aggregate('live', \$\$
         SELECT k1, k2, date_trunc('hour', ts) AS hour, count(*) AS n, count(v_int) AS n_int,
                sum(v_int) AS sum_int, sum(v_num) AS sum_num, avg(v_num) AS avg_num,
                max(v_num) AS max_num, min(v_float) AS min_float, sum(v_float) AS sum_float,
                avg(v_float) AS avg_float, stddev_samp(v_float) AS sd_float, var_pop(v_num) AS var_num,
                bool_or(v_int > 0) AS any_pos, bit_and(v_int) AS all_bits
           FROM ev WHERE v_int IS DISTINCT FROM 13 GROUP BY k1, k2, hour\$\$)" >/dev/null
ok $? "an aggregate over 3000 existing rows is created and backfilled"
q $db "SELECT pipeline.create_rollup('live_daily', 'live', \$\$k2, date_trunc('day', hour) AS day\$\$)" >/dev/null
ok $? "with a daily rollup of it"
is "$(q $db "SELECT count(*) FROM pipeline.check_aggregate('live')")" 0 "the backfill equals the query"

# 40 random batches: inserts of 1 to 800 rows, COPY, updates, deletes
for batch in $(seq 2 41); do
	size=$((RANDOM % 800 + 1))
	case $((batch % 5)) in
	0) q $db "COPY (SELECT * FROM ($(random_rows "$batch" "$size" | tail -n +2)) r) TO STDOUT" |
		psql -X -q -d $db -c "\\copy ev FROM STDIN" ;;
	1) q $db "UPDATE ev SET v_num = v_num * -1, ts = ts - interval '2 hours' WHERE random() < 0.05" >/dev/null ;;
	2) q $db "DELETE FROM ev WHERE random() < 0.03" >/dev/null ;;
	*) psql -X -q -d $db -c "$(random_rows "$batch" "$size" | head -n 1)" \
		-c "INSERT INTO ev $(random_rows "$batch" "$size" | tail -n +2)" >/dev/null ;;
	esac
done
is "$(exact_difference)" 0 "after 40 random batches the integer and numeric columns equal the query exactly"
is "$(q $db "SELECT count(*) FROM pipeline.check_aggregate('live')")" 0 "and every column equals it (floats within 1e-9)"

# four concurrent writers into the same groups
for writer in 1 2 3 4; do
	(for batch in $(seq 1 10); do
		psql -X -q -d $db -c "INSERT INTO ev $(random_rows $((writer * 100 + batch)) 300 | tail -n +2)" >/dev/null
	done) &
done
wait
is "$(q $db "SELECT count(*) FROM ev")" "$(q $db "SELECT sum(n) + (SELECT count(*) FROM ev WHERE v_int = 13) FROM live")" \
	"four concurrent writers: every row is counted once"
is "$(exact_difference)" 0 "four concurrent writers: the output equals the query exactly"
is "$(q $db "SELECT count(*) FROM pipeline.check_aggregate('live')")" 0 "four concurrent writers: check_aggregate finds no difference"
is "$(q $db "SELECT count(*) FROM pipeline.check_aggregate('live_daily')")" 0 "the rollup equals its aggregate's states combined afresh"

# a rebuild gives the same table
before=$(q $db "SELECT md5(string_agg(l::text, ',' ORDER BY l::text)) FROM (SELECT k1, k2, hour, n, sum_int, sum_num FROM live) l")
q $db "SELECT pipeline.rebuild_aggregate('live')" >/dev/null
is "$(q $db "SELECT md5(string_agg(l::text, ',' ORDER BY l::text)) FROM (SELECT k1, k2, hour, n, sum_int, sum_num FROM live) l")" \
	"$before" "a rebuild from scratch gives the same groups and values"

# Kafka input: folded in the worker's batch transaction, with its offsets
q "ALTER SYSTEM SET pg_pipeline.restart_backoff_max = '2s'" >/dev/null && q "SELECT pg_reload_conf()" >/dev/null
q $db "CREATE TABLE kev (id bigint, body text, amount numeric)"
q $db "SELECT pipeline.create_aggregate('kbuckets', \$\$
         SELECT CASE WHEN id % 7 = 0 THEN NULL ELSE id % 10 END AS bucket, count(*) AS n,
                sum(id) AS ids, sum(amount) AS total, max(amount) AS top
           FROM kev GROUP BY 1\$\$)" >/dev/null
# the same stream through a source that keeps no rows: they only feed its aggregate
q $db "CREATE TABLE kev_folded (id bigint, body text, amount numeric)"
q $db "SELECT pipeline.create_aggregate('kfolded', \$\$
         SELECT CASE WHEN id % 7 = 0 THEN NULL ELSE id % 10 END AS bucket, count(*) AS n,
                sum(id) AS ids, sum(amount) AS total, max(amount) AS top
           FROM kev_folded GROUP BY 1\$\$)" >/dev/null
broker_start kev:4
q $db "SELECT pipeline.create_kafka_source('kev', '$BROKER_BOOTSTRAP', 'kev', 'kev', 'json',
        '{\"batch_size\": 700, \"max_batch_latency_ms\": 50, \"parallelism\": 2}')" >/dev/null
q $db "SELECT pipeline.create_kafka_source('kev_folded', '$BROKER_BOOTSTRAP', 'kev', 'kev_folded', 'json',
        '{\"batch_size\": 900, \"max_batch_latency_ms\": 50, \"store_rows\": false}')" >/dev/null
(for chunk in $(seq 0 19); do
	produce_json kev $((1 + chunk * 1000)) $((1000 + chunk * 1000))
	sleep 0.2
done) &
producer=$!
kills=0
for signal in KILL TERM KILL; do
	sleep 1
	wait_for_sql 30 $db "SELECT $WORKER_COUNT > 0"
	pid=$(source_workers $db | head -n 1)
	if [ -n "$pid" ] && kill -s "$signal" "$pid"; then kills=$((kills + 1)); fi
	[ "$signal" = KILL ] && sleep 1 && wait_until 30 q "SELECT 1"
done
wait "$producer"
wait_for_sql 90 $db "SELECT coalesce(sum(n), 0) >= 20000 FROM kbuckets"
sleep 1
is "$kills" 3 "three source workers were killed while the stream ran"
is "$(q $db "SELECT sum(n) || ' ' || sum(ids) || ' ' || count(*) FROM kbuckets")" "20000 200010000 11" \
	"the Kafka-fed aggregate counts each of 20000 messages once across worker kills"
is "$(q $db "SELECT count(*) FROM pipeline.check_aggregate('kbuckets')")" 0 "and equals its query over the stored rows"
wait_for_sql 60 $db "SELECT coalesce(sum(n), 0) >= 20000 FROM kfolded"
sleep 1
is "$(q $db "SELECT (SELECT sum(n) || ' ' || sum(ids) || ' ' || count(*) FROM kfolded) || ' ' || (SELECT count(*) FROM kev_folded)")" \
	"20000 200010000 11 0" "a source that stores no rows feeds its aggregate each message once, and its table stays empty"
is "$(q $db "SELECT count(*) FROM (SELECT bucket, n, ids, total, top FROM kbuckets EXCEPT SELECT bucket, n, ids, total, top FROM kfolded) d")" 0 \
	"it equals the aggregate over the stored rows, group by group"
broker_stop
done_testing
