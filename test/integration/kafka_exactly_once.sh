# Exactly-once ingestion from Kafka, proven by exact counts and sums of
# produced versus stored rows across worker kills, an immediate shutdown of
# the cluster, and a 30 s broker outage.
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/tap.sh
. test/lib/pg.sh
. test/lib/broker.sh

plan 16
db=kafka_eo

# expect_exactly N DESCRIPTION: ids 1..N each stored once, nothing else
expect_exactly() {
	local n=$1 got
	wait_for_sql 90 $db "SELECT count(*) >= $n FROM events"
	sleep 1 # a duplicate would show up after the count was reached
	got=$(q $db "SELECT count(*) || ' ' || count(DISTINCT id) || ' ' || coalesce(sum(id), 0) || ' ' || coalesce(min(id), 0) || ' ' || coalesce(max(id), 0) FROM events")
	is "$got" "$n $n $((n * (n + 1) / 2)) 1 $n" "$2: $n rows, each id once (count, distinct, sum, min, max)"
}

q "ALTER SYSTEM SET pg_pipeline.restart_backoff_max = '2s'" && q "SELECT pg_reload_conf()" >/dev/null
fresh_database $db
q $db "CREATE TABLE events (id bigint, body text, amount numeric)"

broker_start events:4
q $db "SELECT pipeline.create_kafka_source('events', '$BROKER_BOOTSTRAP', 'events', 'events', 'json',
        '{\"batch_size\": 500, \"max_batch_latency_ms\": 50, \"parallelism\": 2}')" >/dev/null
wait_for_sql 10 $db "SELECT $WORKER_COUNT = 2"
ok $? "two workers split the four partitions"

produce_json events 1 2000
expect_exactly 2000 "steady stream"

# (a) five worker kills during a steady stream: three SIGTERMs, two SIGKILLs
(for chunk in $(seq 0 19); do
	produce_json events $((2001 + chunk * 1000)) $((3000 + chunk * 1000))
	sleep 0.3
done) &
producer=$!
kills=0
for signal in TERM KILL TERM KILL TERM; do
	sleep 1
	wait_for_sql 30 $db "SELECT $WORKER_COUNT > 0"
	pid=$(source_workers $db | head -n 1)
	if [ -n "$pid" ] && kill -s "$signal" "$pid"; then kills=$((kills + 1)); fi
	[ "$signal" = KILL ] && sleep 1 && wait_until 30 q "SELECT 1"
done
wait "$producer"
is "$kills" 5 "five workers were killed while the stream ran"
expect_exactly 22000 "after 5 worker kills"
wait_for_sql 10 $db "SELECT $WORKER_COUNT = 2"
ok $? "the supervisor restarted the killed workers"

# (b) immediate shutdown mid-stream, then restart
(produce_json events 22001 32000) &
producer=$!
sleep 0.5
restart_cluster immediate >/dev/null 2>&1
ok $? "the cluster restarts after an immediate shutdown mid-stream"
wait "$producer"
wait_until 30 q "SELECT 1"
expect_exactly 32000 "after an immediate shutdown"

# (c) broker outage of 30 s: ingestion resumes by itself
produce_json events 32001 34000
is "$(broker_cmd down -1)" "ok down -1" "all brokers go down"
sleep 30
q $db "SELECT last_error FROM pipeline.kafka_status WHERE last_error IS NOT NULL LIMIT 1" | grep -q .
ok $? "the outage shows in pipeline.kafka_status"
is "$(broker_cmd up -1)" "ok up -1" "the brokers come back"
produce_json events 34001 36000
expect_exactly 36000 "after a 30 s broker outage"

# the committed offsets add up to what was read, partition by partition
is "$(q $db "SELECT sum(committed_offset) FROM pipeline.kafka_status")" 36000 \
	"committed offsets sum to the number of messages"
is "$(q $db "SELECT sum(lag) FROM pipeline.kafka_status")" 0 "no lag is left"
is "$(q $db "SELECT count(*) FROM pipeline.kafka_dead_letters")" 0 "no dead letters"
is "$(q $db "SELECT count(DISTINCT state) || ' ' || min(state) FROM pipeline.kafka_status")" "1 streaming" \
	"every partition is streaming"

q $db "SELECT pipeline.drop_kafka_source('events')" >/dev/null
wait_for_sql 10 $db "SELECT $WORKER_COUNT = 0"
ok $? "dropping the source stops its workers"
broker_stop
q "DROP DATABASE $db" >/dev/null
q "ALTER SYSTEM RESET pg_pipeline.restart_backoff_max" && q "SELECT pg_reload_conf()" >/dev/null
done_testing
