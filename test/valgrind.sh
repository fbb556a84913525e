#!/usr/bin/env bash
# Valgrind (memcheck) over the ingest and scheduler workers for one short
# stream.  A throwaway cluster runs under valgrind, which follows every
# process the postmaster forks: the launcher, the supervisor (scheduler), the
# Kafka source workers (decode, store, aggregate, fraud scoring) and the job
# workers (a table source, a Kafka sink).  The stream: MESSAGES JSON events
# (default 2000, one in a hundred malformed: dead letters) on a 4-partition
# topic, read by two workers into a table with a live aggregate, plus
# MESSAGES/4 card payments read into a fraud scorer's table whose alerts a
# job produces to Kafka every second; meanwhile a job runs every second and a
# job graph (table source import -> report) runs once.  Then the cluster
# stops (fast), each process's leak check runs at its exit, and the logs are
# read.
#
#   bash test/valgrind.sh [MESSAGES]      VALGRIND_DIR=dir keeps the logs there
#
# Verdict (exit status 1 if any fails): every message stored, scored and
# alerted once, each worker exited with a leak check, and no report whose
# innermost frame outside libraries and allocators - of its stack or of the
# memory's origin - is in our code (src/): definite leaks, invalid reads,
# writes or frees, uses of uninitialised values.  PostgreSQL is not built
# with USE_VALGRIND, so its own memory contexts are opaque to memcheck and
# its own reports (logged, counted) are not ours to judge.
# Not part of make test (about two minutes); see CONTRIBUTING.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
. test/lib/broker.sh

MESSAGES=${1:-2000}
PAYMENTS=$((MESSAGES / 4))
BIN=/usr/lib/postgresql/15/bin
DIR=${VALGRIND_DIR:-$(mktemp -d /tmp/pipeline_valgrind.XXXXXX)}
as_owner() {
	if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

bash test/install-deps valgrind
# the plain module: the sanitizers' runtime cannot run under valgrind
SANITIZE= bash test/build

rm -rf "$DIR"
mkdir -p "$DIR/run" "$DIR/logs"
[ "$(id -u)" -eq 0 ] && chown -R postgres: "$DIR"
chmod 755 "$DIR"
port=5432 # no TCP: the socket is in $DIR/run

as_owner "$BIN/initdb" -D "$DIR/data" -U postgres --auth=trust >"$DIR/initdb.log"
cat >>"$DIR/data/postgresql.conf" <<EOT
shared_preload_libraries = 'pg_pipeline'
port = $port
listen_addresses = ''
unix_socket_directories = '$DIR/run'
pg_pipeline.allow_superuser_jobs = on
pg_pipeline.restart_backoff_max = '2s'
EOT

# every process the postmaster forks is followed, with a log of its own
as_owner valgrind --leak-check=full --show-leak-kinds=definite \
	--errors-for-leak-kinds=definite --track-origins=yes --num-callers=40 \
	--fullpath-after= --log-file="$DIR/logs/vg.%p.log" \
	"$BIN/postgres" -D "$DIR/data" >"$DIR/postgresql.log" 2>&1 &
postmaster=$!

psql_() { "$BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$DIR/run" -p "$port" -U postgres -d "${DB:-postgres}" "$@"; }
stop_all() {
	broker_stop
	if kill -0 "$postmaster" 2>/dev/null; then
		as_owner "$BIN/pg_ctl" -D "$DIR/data" -m fast -t 300 -w stop >/dev/null || kill -9 "$postmaster"
	fi
}
trap stop_all EXIT

# wait_for SECONDS QUERY: true once QUERY (a boolean) returns t
wait_for() {
	local deadline=$((SECONDS + $1))
	until [ "$(psql_ -c "$2" 2>/dev/null)" = t ]; do
		[ "$SECONDS" -ge "$deadline" ] && return 1
		sleep 0.5
	done
}

echo "valgrind: starting the cluster under memcheck (logs in $DIR/logs)"
wait_for 300 "SELECT true" || { cat "$DIR/postgresql.log"; exit 1; }
psql_ -c "CREATE DATABASE vg"
DB=vg
psql_ -c "CREATE EXTENSION pg_pipeline"
psql_ >/dev/null <<'EOT'
CREATE TABLE events (id bigint, body text, amount numeric);
SELECT pipeline.create_aggregate('amount_by_bucket',
    $$SELECT amount, count(*) AS n, sum(id) AS ids, max(body) AS last_body FROM events GROUP BY amount$$);
CREATE TABLE ticks (at timestamptz);
SELECT pipeline.schedule_job('tick', '* * * * * *', $$INSERT INTO ticks VALUES (now())$$);
CREATE TABLE pos (id bigint, qty integer, amount numeric(10,2));
INSERT INTO pos SELECT i, CASE WHEN i % 50 = 0 THEN -1 ELSE 1 + i % 3 END, i * 0.5 FROM generate_series(1, 1000) i;
CREATE TABLE sales (id bigint, qty integer, amount numeric(10,2));
SELECT pipeline.create_table_source('pos_import', 'pos', 'sales', 'append',
    '{"watermark_column": "id", "filter": "src.qty > 0", "batch_size": 100}');
CREATE TABLE report (events bigint, sales bigint, at timestamptz);
SELECT pipeline.schedule_job('import', NULL, $$CALL pipeline.run_table_source('pos_import')$$, '{"atomic": false}');
SELECT pipeline.schedule_job('report', NULL, $$INSERT INTO report SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM sales), now()$$,
    '{"depends_on": ["import"]}');
CREATE TABLE payments (transaction_id bigint PRIMARY KEY, tx_time timestamptz, customer_id bigint,
                       terminal_id bigint, amount numeric(10,2));
SELECT pipeline.create_fraud_scorer('payments', 'payments');
SELECT pipeline.add_fraud_rule('payments', 'card_burst', 'customer', 'count', '1 hour', '>=', 4, '{"action": "alert"}');
EOT

broker_start events:4 payments:2 alerts:1
trap stop_all EXIT # broker_start set its own
psql_ >/dev/null <<EOT
SELECT pipeline.create_kafka_sink('alerts_out', 'payments_alerts', '$BROKER_BOOTSTRAP', 'alerts', '{"key_column": "customer_id"}');
SELECT pipeline.schedule_job('alerts_out', '* * * * * *', \$\$SELECT pipeline.run_kafka_sink('alerts_out')\$\$);
SELECT pipeline.create_kafka_source('payments', '$BROKER_BOOTSTRAP', 'payments', 'payments', 'json');
EOT
psql_ -c "SELECT pipeline.create_kafka_source('events', '$BROKER_BOOTSTRAP', 'events', 'events', 'json',
        '{\"batch_size\": 200, \"max_batch_latency_ms\": 50, \"parallelism\": 2}')" >/dev/null
good=$((MESSAGES - MESSAGES / 100))
produce_json events 1 "$good"
seq "$((MESSAGES / 100))" | awk '{ printf "bad%d:{\"id\": \"not a number %d\"\n", $1, $1 }' |
	kcat -b "$BROKER_BOOTSTRAP" -P -t events -K:
# card payments: 50 cards, ten each within minutes, so the rule alerts
seq "$PAYMENTS" | awk '{ printf "{\"transaction_id\": %d, \"tx_time\": \"2026-12-01 00:%02d:%02d+00\", \"customer_id\": %d, \"terminal_id\": %d, \"amount\": %d.5}\n", $1, int($1 / 60) % 60, $1 % 60, $1 % 50, $1 % 7, $1 % 90 }' |
	kcat -b "$BROKER_BOOTSTRAP" -P -t payments
psql_ -c "SELECT pipeline.run_job('import')" >/dev/null

started=$SECONDS
verdict=0
if wait_for 600 "SELECT count(*) >= $good FROM events"; then
	echo "valgrind: $good messages stored in $((SECONDS - started)) s under valgrind"
else
	echo "not ok: the stream was not stored in 600 s ($(psql_ -c 'SELECT count(*) FROM events') of $good rows)"
	verdict=1
fi
wait_for 120 "SELECT count(*) > 0 FROM report" || { echo "not ok: the job graph did not run"; verdict=1; }
[ "$(psql_ -c 'SELECT count(*) FROM sales')" = 980 ] || { echo "not ok: the table source imported $(psql_ -c 'SELECT count(*) FROM sales') of 980 rows"; verdict=1; }
wait_for 60 "SELECT count(*) >= 3 FROM ticks" || { echo "not ok: the scheduled job did not run"; verdict=1; }
wait_for 120 "SELECT count(*) = $PAYMENTS FROM payments_scores" ||
	{ echo "not ok: $(psql_ -c 'SELECT count(*) FROM payments_scores') of $PAYMENTS payments scored"; verdict=1; }
wait_for 60 "SELECT produced_rows = (SELECT count(*) FROM payments_alerts) AND produced_rows > 0 FROM pipeline.kafka_sink_status" ||
	{ echo "not ok: the alerts were not all produced to Kafka"; verdict=1; }
sleep 2
stored=$(psql_ -c "SELECT count(*) || ' ' || count(DISTINCT id) || ' ' || coalesce(sum(id), 0) FROM events")
dead=$(psql_ -c "SELECT count(*) FROM pipeline.kafka_dead_letters")
aggregated=$(psql_ -c "SELECT coalesce(sum(n), 0) FROM amount_by_bucket")
# the workers whose exit must show a leak check: kind and pid, one a line
psql_ -F ' ' -c "SELECT replace(backend_type, ' ', '_'), pid FROM pg_stat_activity WHERE backend_type LIKE 'pg_pipeline%'
                 UNION ALL SELECT 'pg_pipeline_job', pid FROM pipeline.job_runs WHERE pid IS NOT NULL" >"$DIR/workers"
workers=$(awk '{ n[$1]++ } END { for (k in n) printf "%s%s %d", (s++ ? ", " : ""), k, n[k] }' "$DIR/workers")
echo "valgrind: rows/distinct/sum $stored, dead letters $dead, aggregated $aggregated, ticks $(psql_ -c 'SELECT count(*) FROM ticks')," \
	"payments scored $(psql_ -c 'SELECT count(*) FROM payments_scores'), alerts produced $(psql_ -c 'SELECT produced_rows FROM pipeline.kafka_sink_status')"
echo "valgrind: workers $workers"
if [ "$stored" != "$good $good $((good * (good + 1) / 2))" ] || [ "$dead" != "$((MESSAGES / 100))" ] ||
	[ "$aggregated" != "$good" ]; then
	echo "not ok: expected $good rows once each, $((MESSAGES / 100)) dead letters, $good aggregated"
	verdict=1
fi
psql_ -c "SELECT pipeline.drop_kafka_source('events'), pipeline.drop_kafka_source('payments')" >/dev/null

echo "valgrind: stopping the cluster (each process's leak check runs at its exit)"
stop_all
trap - EXIT
wait "$postmaster" 2>/dev/null || true

report=$(awk -v ours="$ROOT/src/" '
	# Each report is a block of lines of one process: a headline, its stack,
	# then maybe where the memory came from (origin); blank line ends it.
	# The "own frame" of a stack is its innermost frame in the server or in our
	# sources, skipping the allocators: a report is ours when that frame of
	# its stack or of its origin is in our sources.
	function own_frame(line) {
		return (index(line, ours) > 0 || index(line, "/bin/postgres)") > 0) &&
			line !~ /: (palloc|palloc0|palloc_extended|repalloc|pstrdup|pnstrdup|psprintf|MemoryContextAlloc[A-Za-z]*|AllocSet[A-Za-z]*|GenerationAlloc|SlabAlloc) /
	}
	function flush() {
		if (head != "" && (stack_ours || origin_ours)) {
			n++
			printf "%s: %s\n%s%s\n", FILENAME, head, stack, origin
		}
		head = stack = origin = ""
		in_origin = stack_seen = stack_ours = origin_seen = origin_ours = 0
	}
	FNR == 1 { flush() }
	{ line = $0; sub(/^==[0-9]+== ?/, "", line) }
	line == "" { flush(); next }
	head == "" { if (line !~ /^ /) head = line; next }
	line ~ /^ *(Uninitialised value was created|Address 0x|Block was alloc)/ { in_origin = 1; origin_seen = 0 }
	in_origin {
		origin = origin $0 "\n"
		if (!origin_seen && own_frame(line)) { origin_seen = 1; origin_ours = origin_ours || index(line, ours) > 0 }
		next
	}
	{
		stack = stack $0 "\n"
		if (!stack_seen && own_frame(line)) { stack_seen = 1; stack_ours = index(line, ours) > 0 }
	}
	END { flush(); exit n > 0 }
' "$DIR"/logs/vg.*.log) || {
	echo "not ok: memcheck reports in our code:"
	echo "$report"
	verdict=1
}
while read -r kind pid; do
	grep -q "definitely lost:\|All heap blocks were freed" "$DIR/logs/vg.$pid.log" 2>/dev/null ||
		{ echo "not ok: no leak check in the log of $kind $pid (did it exit normally?)"; verdict=1; }
done <"$DIR/workers"
processes=$(grep -l "definitely lost:\|All heap blocks were freed" "$DIR"/logs/vg.*.log | wc -l)
lost=$(grep -h "definitely lost:" "$DIR"/logs/vg.*.log | awk '{ gsub(",", "", $4); b += $4 } END { print b + 0 }')
errors=$(grep -h "ERROR SUMMARY:" "$DIR"/logs/vg.*.log | awk '{ e += $4 } END { print e + 0 }')
echo "valgrind: $(ls "$DIR"/logs/vg.*.log | wc -l) processes, $processes leak-checked at exit; in all $lost bytes definitely lost and $errors reports (PostgreSQL's own and ours)"
echo "valgrind: logs in $DIR/logs"
[ "$verdict" = 0 ] && echo "valgrind: PASS" || echo "valgrind: FAIL"
exit "$verdict"
