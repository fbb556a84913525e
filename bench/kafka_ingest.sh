#!/usr/bin/env bash
# Kafka ingest benchmark: messages/s of a pg_pipeline JSON source into a
# 5-column typed table, against what a user would otherwise run, measured
# side by side on the same test broker and cluster:
#   (1) pipeline.create_kafka_source, format json, WORKERS workers (default 1;
#       (2) and (3) keep two processes busy: kcat and the COPY backend)
#   (2) naive: kcat | psql \copy into a jsonb column, then INSERT ... SELECT casting fields
#   (3) kcat | psql \copy of pre-typed CSV straight into the table
# (2) and (3) are not exactly-once: they keep no offsets.
#
#   bash bench/kafka_ingest.sh [MESSAGES]     (default 1000000; WORKERS=2 for two workers,
#                                              ROUNDS=n turns of the three, default 3)
set -euo pipefail
cd "$(dirname "$0")/.."

. bench/lib.sh
in_bench_cluster "$0" "$@" -- max_worker_processes=16 shared_buffers=512MB max_wal_size=4GB

N=${1:-1000000}
WORKERS=${WORKERS:-1}
ROUNDS=${ROUNDS:-3}
PARTITIONS=64 # the test broker keeps ~5 MiB per partition: stay well below
. test/lib/pg.sh
. test/lib/broker.sh


echo "kafka_ingest: $N messages, $PARTITIONS partitions, $(nproc) cores, $(date -u +%Y-%m-%d)"
broker_start -n 1 "json:$PARTITIONS" "csv:$PARTITIONS"
q "CREATE DATABASE bench" >/dev/null
q bench "CREATE EXTENSION pg_pipeline"
for t in ours naive csv; do
	q bench "CREATE TABLE $t (id bigint, user_id integer, url text, amount numeric(10,2), ts timestamptz)"
done
q bench "CREATE TABLE naive_raw (j jsonb)"
# A running server has touched all of shared_buffers; a fresh one pays a page
# fault per buffer on first use, which would fall on whichever approach runs
# first.  Touch them all (600 MB > shared_buffers) before timing anything.
q bench "CREATE UNLOGGED TABLE warm_up (filler text);
         INSERT INTO warm_up SELECT repeat('x', 2000) FROM generate_series(1, 300000);
         DROP TABLE warm_up"

echo "producing..."
seq 1 "$N" | awk '{ printf "%d:{\"id\": %d, \"user_id\": %d, \"url\": \"/page/%d\", \"amount\": %d.%02d, \"ts\": \"2026-11-24T10:%02d:%02dZ\"}\n", $1, $1, $1 % 5000, $1 % 300, $1 % 1000, $1 % 100, ($1 / 60) % 60, $1 % 60 }' |
	kcat -b "$BROKER_BOOTSTRAP" -P -t json -K: -X queue.buffering.max.messages=1000000
seq 1 "$N" | awk '{ printf "%d:%d,%d,/page/%d,%d.%02d,2026-11-24T10:%02d:%02dZ\n", $1, $1, $1 % 5000, $1 % 300, $1 % 1000, $1 % 100, ($1 / 60) % 60, $1 % 60 }' |
	kcat -b "$BROKER_BOOTSTRAP" -P -t csv -K: -X queue.buffering.max.messages=1000000

# the test broker drops the oldest messages past ~5 MiB per partition
for topic in json csv; do
	stored=$(kcat -b "$BROKER_BOOTSTRAP" -C -t $topic -o beginning -e -q -f 'x\n' | wc -l)
	if [ "$stored" -ne "$N" ]; then
		echo "the broker kept $stored of $N messages of topic $topic: use fewer messages" >&2
		exit 1
	fi
done

# (1) pg_pipeline, from create_kafka_source until every offset is committed
run_ours() {
	local t0 t1 done_rows first_batch= quarter=0 pids kb perf_pid=
	q bench "TRUNCATE ours" >/dev/null
	t0=$(now)
	q bench "SELECT pipeline.create_kafka_source('ours', '$BROKER_BOOTSTRAP', 'json', 'ours', 'json',
	          '{\"batch_size\": 10000, \"max_batch_latency_ms\": 200, \"parallelism\": $WORKERS}')" >/dev/null
	memory=
	if [ -n "${PERF_OUT:-}" ] && [ "$round" -eq 1 ]; then # PERF_OUT=file: profile the first round's worker
		until pid=$(q bench "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_pipeline kafka source' LIMIT 1") && [ -n "$pid" ]; do sleep 0.01; done
		perf record -F 999 -g -o "$PERF_OUT" -p "$pid" 2>/dev/null &
		perf_pid=$!
	fi
	# poll the committed offsets (64 rows), not count(*) of the growing table
	poll_open bench
	while :; do
		done_rows=$(poll "SELECT coalesce(sum(next_offset), 0) FROM pipeline.kafka_offsets")
		[ -z "$first_batch" ] && [ "$done_rows" -gt 0 ] && first_batch=$(now)
		[ "$done_rows" -ge "$N" ] && break
		if [ "$quarter" -lt 4 ] && [ "$done_rows" -ge $((quarter * N / 4)) ] && [ "$done_rows" -gt 0 ]; then
			# private memory (kB) of the busiest worker, at 0, 25, 50 and 75 % of the run
			# (the coprocess is not reachable from inside a pipeline)
			pids=$(poll "SELECT string_agg(pid::text, ' ') FROM pg_stat_activity WHERE backend_type = 'pg_pipeline kafka source'")
			kb=$(for pid in $pids; do awk '/RssAnon/ { print $2 }' "/proc/$pid/status" 2>/dev/null; done | sort -n | tail -n 1)
			memory="$memory ${kb:-?}"
			quarter=$((quarter + 1))
		fi
		sleep 0.05
	done
	poll_close
	t1=$(now)
	[ -z "$perf_pid" ] || { kill -INT "$perf_pid"; wait "$perf_pid" || true; }
	ours=$(rate "$N" "$t0" "$t1")
	startup=$(awk -v a="$t0" -v b="$first_batch" 'BEGIN { printf "%.2f", b - a }')
	check_table ours
	q bench "SELECT pipeline.drop_kafka_source('ours')" >/dev/null # its offsets go with it
}

# (2) naive: raw jsonb then INSERT ... SELECT
run_naive() {
	local t0 t1
	q bench "TRUNCATE naive, naive_raw" >/dev/null
	t0=$(now)
	kcat -b "$BROKER_BOOTSTRAP" -C -t json -o beginning -e -q |
		psql -X -q -d bench -c "\\copy naive_raw (j) FROM STDIN"
	q bench "INSERT INTO naive SELECT (j->>'id')::bigint, (j->>'user_id')::int, j->>'url',
	          (j->>'amount')::numeric, (j->>'ts')::timestamptz FROM naive_raw" >/dev/null
	t1=$(now)
	naive=$(rate "$N" "$t0" "$t1")
	check_table naive
}

# (3) pre-typed CSV straight into the table
run_csv() {
	local t0 t1
	q bench "TRUNCATE csv" >/dev/null
	t0=$(now)
	kcat -b "$BROKER_BOOTSTRAP" -C -t csv -o beginning -e -q |
		psql -X -q -d bench -c "\\copy csv FROM STDIN (FORMAT csv)"
	t1=$(now)
	csv=$(rate "$N" "$t0" "$t1")
	check_table csv
}

# every approach must have stored every message once
check_table() {
	local got
	got=$(q bench "SELECT count(*) || '/' || sum(id) FROM $1")
	if [ "$got" != "$N/$((N * (N + 1) / 2))" ]; then
		echo "table $1 holds count/sum $got, not $N/$((N * (N + 1) / 2))" >&2
		exit 1
	fi
}

median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# The machine's speed drifts by tens of percent over minutes: the approaches
# take turns, ROUNDS times, and the medians are compared.
printf '%-6s %14s %14s %14s %8s %8s %9s\n' round "(1) msg/s" "(2) msg/s" "(3) msg/s" "(1)/(2)" "(1)/(3)" "start-up"
all_ours=() all_naive=() all_csv=()
for round in $(seq 1 "$ROUNDS"); do
	run_ours
	run_naive
	run_csv
	all_ours+=("$ours") all_naive+=("$naive") all_csv+=("$csv")
	awk -v r="$round" -v a="$ours" -v b="$naive" -v c="$csv" -v s="$startup" \
		'BEGIN { printf "%-6s %14d %14d %14d %7.2fx %7.2fx %8ss\n", r, a, b, c, a / b, a / c, s }'
done
ours=$(median "${all_ours[@]}")
naive=$(median "${all_naive[@]}")
csv=$(median "${all_csv[@]}")
echo "every table held all $N messages once, in every round"
printf '%-58s %10s msg/s\n' "(1) pg_pipeline json source, $WORKERS worker(s), exactly-once" "$ours" \
	"(2) kcat | psql \\copy jsonb + INSERT ... SELECT" "$naive" \
	"(3) kcat | psql \\copy pre-typed CSV" "$csv"
awk -v a="$ours" -v b="$naive" -v c="$csv" 'BEGIN { printf "medians: ratio (1)/(2) = %.2fx   ratio (1)/(3) = %.2fx\n", a / b, a / c }'
echo "(1)'s rate includes its start-up: the time from create_kafka_source to its first committed batch"
echo "worker private memory (RssAnon, kB) at 0/25/50/75 % of the last run of (1):$memory"
broker_stop
