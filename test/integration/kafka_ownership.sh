# A source writes as its owner: losing INSERT stops it with a clear error
# and loses nothing; definitions and positions survive pg_dump/pg_restore.
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/tap.sh
. test/lib/pg.sh
. test/lib/broker.sh

plan 13
db=kafka_own

q "DROP DATABASE IF EXISTS ${db}_copy" >/dev/null 2>&1
q "DROP ROLE IF EXISTS pipeline_test_alice" >/dev/null 2>&1
q "ALTER SYSTEM SET pg_pipeline.restart_backoff_max = '1s'" && q "SELECT pg_reload_conf()" >/dev/null
fresh_database $db
q "CREATE ROLE pipeline_test_alice LOGIN"
q $db "CREATE TABLE events (id bigint, body text, amount numeric)"
q $db "GRANT INSERT ON events TO pipeline_test_alice"
broker_start events:2

q $db "SET ROLE pipeline_test_alice; SELECT pipeline.create_kafka_source('events', '$BROKER_BOOTSTRAP', 'events', 'events', 'json',
        '{\"max_batch_latency_ms\": 50, \"kafka_properties\": {\"client.id\": \"alice\"}}')" >/dev/null
produce_json events 1 100
wait_for_sql 20 $db "SELECT count(*) = 100 FROM events"
ok $? "alice's source streams into a table she may insert into"
is "$(q $db "SELECT usename FROM pg_stat_activity WHERE backend_type = 'pg_pipeline kafka source' AND datname = current_database()")" \
	pipeline_test_alice "its worker runs as alice"

q $db "REVOKE INSERT ON events FROM pipeline_test_alice"
produce_json events 101 200
wait_for_sql 20 $db "SELECT last_error LIKE 'permission denied for table events%' FROM pipeline.kafka_sources WHERE name = 'events'"
ok $? "without INSERT the worker stops with 'permission denied' in its status"
is "$(q $db "SELECT count(*) || ' ' || (SELECT count(*) FROM pipeline.kafka_dead_letters) FROM events")" "100 0" \
	"nothing is stored and nothing is blamed on the messages"
q $db "GRANT INSERT ON events TO pipeline_test_alice"
wait_for_sql 30 $db "SELECT count(*) = 200 FROM events"
ok $? "after the grant the worker resumes by itself"
is "$(q $db "SELECT count(DISTINCT id) || ' ' || sum(id) FROM events")" "200 20100" "each message stored once"

# an error that never goes away pauses the source after 10 failed batches in a row
q $db "REVOKE INSERT ON events FROM pipeline_test_alice"
produce_json events 201 210
wait_for_sql 60 $db "SELECT NOT enabled FROM pipeline.kafka_sources WHERE name = 'events'"
ok $? "a source that keeps failing is paused instead of retrying forever"
q $db "SELECT paused_reason FROM pipeline.kafka_sources" | grep -q '^paused after 10 failed batches in a row: permission denied'
ok $? "with the count and the error as its reason"
q $db "GRANT INSERT ON events TO pipeline_test_alice"
q $db "SET ROLE pipeline_test_alice; SELECT pipeline.resume_kafka_source('events')" >/dev/null
wait_for_sql 30 $db "SELECT count(*) = 210 AND count(DISTINCT id) = 210 FROM events"
ok $? "resumed, it stores the waiting messages once"

# pg_dump / pg_restore keep sources, secrets and offsets
dump=$(mktemp)
pg_dump -Fc -d $db -f "$dump"
ok $? "pg_dump succeeds"
q "CREATE DATABASE ${db}_copy"
pg_restore -d ${db}_copy "$dump" 2>&1 | grep -v "^$" | head -5
is "$(q ${db}_copy "SELECT s.name || ' ' || s.owner || ' ' || p.name || '=' || p.value || ' ' || (SELECT sum(next_offset) FROM pipeline.kafka_offsets)
        FROM pipeline.kafka_sources s JOIN pipeline.kafka_source_properties p ON p.source_id = s.id")" \
	"events pipeline_test_alice client.id=alice 210" "the restored database has the source, its properties and its offsets"
produce_json events 211 250
wait_for_sql 30 ${db}_copy "SELECT count(*) = 250 FROM events"
ok $? "the restored source resumes from the restored offsets: nothing read twice"
rm -f "$dump"

broker_stop
q "DROP DATABASE $db WITH (FORCE)" >/dev/null
q "DROP DATABASE ${db}_copy WITH (FORCE)" >/dev/null
q "DROP ROLE pipeline_test_alice"
ok $? "the role can be dropped once its sources are gone"
q "ALTER SYSTEM RESET pg_pipeline.restart_backoff_max" && q "SELECT pg_reload_conf()" >/dev/null
done_testing
