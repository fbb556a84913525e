#!/usr/bin/env bash
# Kafka aggregation benchmark: messages/s folded from a Kafka JSON topic by
# one source worker into a continuous aggregate (1000 groups, 4 aggregates),
# measured side by side on the same test broker and cluster:
#   (1) a source with store_rows = false: rows only feed the aggregate
#   (2) a source storing its rows, with the aggregate over its table
#   (3) a source storing its rows, no aggregate (plain ingestion)
# and, as the transport's ceiling, (0) a bare librdkafka consumer reading
# the same topic (test/kafka_read_rate).
# Each is exactly-once: rows, states and offsets commit together.
#
#   bash bench/aggregate_kafka.sh [MESSAGES]     (default 1000000)
#   BATCH=n: the sources' batch_size (default 100000: a fold costs per batch
#   about one update per touched group, so larger batches amortize it)
#   PERF_OUT=file: record the folding worker (1) with perf
set -euo pipefail
cd "$(dirname "$0")/.."

. bench/lib.sh
in_bench_cluster "$0" "$@" -- max_worker_processes=16 shared_buffers=512MB max_wal_size=4GB

N=${1:-1000000}
BATCH=${BATCH:-100000}
PARTITIONS=64 # the test broker keeps ~5 MiB per partition: stay well below
. test/lib/pg.sh
. test/lib/broker.sh


echo "aggregate_kafka: batch_size $BATCH, $N messages, $PARTITIONS partitions, 1 worker per source, $(nproc) cores, $(date -u +%Y-%m-%d)"
broker_start -n 1 "events:$PARTITIONS"
q "CREATE DATABASE bench" >/dev/null
q bench "CREATE EXTENSION pg_pipeline"
for t in folded stored plain; do
	q bench "CREATE TABLE $t (id bigint, store_id integer, url text, amount numeric(10,2), ts timestamptz)"
done
for t in folded stored; do
	q bench "SELECT pipeline.create_aggregate('${t}_summary', \$\$SELECT store_id, count(*) AS n,
	           sum(amount) AS total, avg(amount) AS mean, max(ts) AS latest FROM $t GROUP BY store_id\$\$)" >/dev/null
done

echo "producing..."
seq 1 "$N" | awk '{ printf "%d:{\"id\": %d, \"store_id\": %d, \"url\": \"/page/%d\", \"amount\": %d.%02d, \"ts\": \"2026-11-24T10:%02d:%02dZ\"}\n", $1, $1, $1 % 1000, $1 % 300, $1 % 1000, $1 % 100, ($1 / 60) % 60, $1 % 60 }' |
	kcat -b "$BROKER_BOOTSTRAP" -P -t events -K: -X queue.buffering.max.messages=1000000
stored=$(kcat -b "$BROKER_BOOTSTRAP" -C -t events -o beginning -e -q -f 'x\n' | wc -l)
if [ "$stored" -ne "$N" ]; then
	echo "the broker kept $stored of $N messages: use fewer messages" >&2
	exit 1
fi

# run SOURCE OPTIONS: messages/s of one source reading the whole topic
run() {
	local t0 t1
	t0=$(now)
	q bench "SELECT pipeline.create_kafka_source('$1', '$BROKER_BOOTSTRAP', 'events', '$1', 'json',
	          '{\"batch_size\": $BATCH, \"max_batch_latency_ms\": 200 $2}')" >/dev/null
	if [ -n "${PERF_OUT:-}" ] && [ "$1" = folded ]; then # PERF_OUT=file: profile the folding worker
		until pid=$(poll "SELECT coalesce(max(pid), 0) FROM pg_stat_activity WHERE backend_type = 'pg_pipeline kafka source'") && [ "$pid" != 0 ]; do sleep 0.01; done
		perf record -F 999 -g -o "$PERF_OUT" -p "$pid" >/dev/null 2>&1 &
		perf_pid=$!
	fi
	until [ "$(poll "SELECT coalesce(sum(o.next_offset), 0) >= $N FROM pipeline.kafka_offsets o
	                 JOIN pipeline.kafka_sources s ON s.id = o.source_id WHERE s.name = '$1'")" = t ]; do
		sleep 0.05
	done
	t1=$(now)
	[ -z "${perf_pid:-}" ] || { kill -INT "$perf_pid"; wait "$perf_pid" || true; perf_pid=; }
	q bench "SELECT pipeline.pause_kafka_source('$1')" >/dev/null
	rate "$N" "$t0" "$t1"
}

# the transport's ceiling: a bare librdkafka consumer, same fetch settings, no database
ceiling=$(test/kafka_read_rate "$BROKER_BOOTSTRAP" events "$PARTITIONS" "$N" | sed 's/.*: \([0-9]*\) msg\/s/\1/')

poll_open bench
folded=$(run folded ', "store_rows": false')
stored=$(run stored '')
plain=$(run plain '')
poll_close

check=$(q bench "SELECT (SELECT sum(n) FROM folded_summary) || ' ' || (SELECT count(*) FROM folded) || ' ' ||
                        (SELECT sum(n) FROM stored_summary) || ' ' || (SELECT count(*) FROM stored) || ' ' || (SELECT count(*) FROM plain)")
echo "counted (folded aggregate, folded rows, stored aggregate, stored rows, plain rows): $check"
q bench "SELECT count(*) FROM pipeline.check_aggregate('stored_summary')" | grep -qx 0 ||
	{ echo "stored_summary differs from its query" >&2; exit 1; }
q bench "SELECT count(*) FROM (SELECT * FROM folded_summary EXCEPT SELECT * FROM stored_summary) d" | grep -qx 0 ||
	{ echo "folded_summary differs from stored_summary" >&2; exit 1; }
printf '%-62s %10s msg/s\n' "(1) json source, store_rows false, folded into the aggregate" "$folded" \
	"(2) json source storing rows, aggregate over its table" "$stored" \
	"(3) json source storing rows, no aggregate" "$plain"
printf '%-62s %10s msg/s\n' "(0) bare librdkafka consumer reading the topic, no database" "$ceiling"
awk -v a="$folded" -v b="$stored" -v c="$plain" -v d="$ceiling" 'BEGIN { printf "ratio (1)/(3) = %.2fx   ratio (2)/(3) = %.2fx   ratio (1)/(0) = %.2fx\n", a / c, b / c, a / d }'
broker_stop
