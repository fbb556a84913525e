# Two PostgreSQL servers share one topic by splitting its partitions: each
# source lists the partitions it reads, and together they store every
# message exactly once.
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/tap.sh
. test/lib/pg.sh
. test/lib/broker.sh

plan 5
db=kafka_split

fresh_database $db
q $db "CREATE TABLE events (id bigint, body text, amount numeric, p integer)"
broker_start -n 2 shared:4
produce_json shared 1 4000

# server A (this cluster) reads partitions 0 and 1
q $db "SELECT pipeline.create_kafka_source('a', '$BROKER_BOOTSTRAP', 'shared', 'events', 'json',
        '{\"columns\": {\"id\": \"id\", \"body\": \"body\", \"amount\": \"amount\"},
          \"partition_column\": \"p\", \"partitions\": [0, 1], \"max_batch_latency_ms\": 50}')" >/dev/null
wait_for_sql 30 $db "SELECT count(*) = 2 AND sum(lag) = 0 FROM pipeline.kafka_status WHERE committed_offset > 0"
ok $? "server A reads partitions 0 and 1 to the end"

# server B (a second cluster) reads partitions 2 and 3
export BROKER_BOOTSTRAP
result=$(mktemp)
export result
with_cluster -o shared_preload_libraries=pg_pipeline -- bash -c '
	. test/lib/pg.sh
	q "CREATE EXTENSION pg_pipeline"
	q "CREATE TABLE events (id bigint, body text, amount numeric, p integer)"
	q "SELECT pipeline.create_kafka_source('"'"'b'"'"', '"'"'$BROKER_BOOTSTRAP'"'"', '"'"'shared'"'"', '"'"'events'"'"', '"'"'json'"'"',
	    '"'"'{\"columns\": {\"id\": \"id\", \"body\": \"body\", \"amount\": \"amount\"},
	      \"partition_column\": \"p\", \"partitions\": [2, 3], \"max_batch_latency_ms\": 50}'"'"')" >/dev/null
	wait_for_sql 30 postgres "SELECT count(*) = 2 AND sum(lag) = 0 FROM pipeline.kafka_status WHERE committed_offset > 0"
	q "SELECT count(*) || '"'"' '"'"'|| sum(id) || '"'"' '"'"' || string_agg(DISTINCT p::text, '"'"','"'"' ORDER BY p::text) FROM events" >"$result"
' >/dev/null 2>&1
read -r b_count b_sum b_parts <"$result"
a=$(q $db "SELECT count(*) || ' ' || sum(id) || ' ' || string_agg(DISTINCT p::text, ',' ORDER BY p::text) FROM events")
read -r a_count a_sum a_parts <<<"$a"
is "$a_parts" "0,1" "server A stored only partitions 0 and 1"
is "${b_parts:-}" "2,3" "server B stored only partitions 2 and 3"
is "$((a_count + ${b_count:-0}))" 4000 "together they stored all 4000 messages"
is "$((a_sum + ${b_sum:-0}))" $((4000 * 4001 / 2)) "each exactly once (the ids add up)"
rm -f "$result"

broker_stop
q "DROP DATABASE $db WITH (FORCE)" >/dev/null
done_testing
