# Faults that must stop a source with a clear reason instead of skipping
# data: too many bad messages, a topic that cannot be read, an offset that
# retention deleted.
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/tap.sh
. test/lib/pg.sh
. test/lib/broker.sh

plan 11
db=kafka_faults

fresh_database $db
q $db "CREATE TABLE events (id bigint, body text, amount numeric)"
broker_start -n 1 noisy:1 gone:1 small:1 quad:4

# max_error_rate: a batch with too many bad messages pauses the source
q $db "SELECT pipeline.create_kafka_source('noisy', '$BROKER_BOOTSTRAP', 'noisy', 'events', 'json',
        '{\"max_error_rate\": 0.05, \"batch_size\": 100, \"max_batch_latency_ms\": 500}')" >/dev/null
(produce_json noisy 1 90; seq 1 10 | sed 's/.*/not json/') | kcat -b "$BROKER_BOOTSTRAP" -P -t noisy
wait_for_sql 30 $db "SELECT NOT enabled FROM pipeline.kafka_sources WHERE name = 'noisy'"
ok $? "10 % bad messages in a batch pause a source whose max_error_rate is 5 %"
q $db "SELECT last_error FROM pipeline.kafka_status WHERE source = 'noisy'" | grep -q 'more than max_error_rate 5.0 %'
ok $? "the status says why"
is "$(q $db "SELECT count(*) || ' ' || (SELECT count(*) FROM pipeline.kafka_dead_letters) FROM events")" "90 10" \
	"the batch that crossed the limit is kept: good rows and dead letters"
q $db "SELECT pipeline.drop_kafka_source('noisy')" >/dev/null
q $db "TRUNCATE events"

# a topic the broker refuses to describe: retried, with the reason in the status
broker_cmd topic-error gone 3 >/dev/null
q $db "SELECT pipeline.create_kafka_source('gone', '$BROKER_BOOTSTRAP', 'gone', 'events', 'json')" >/dev/null
wait_for_sql 30 $db "SELECT last_error LIKE '%gone%' FROM pipeline.kafka_sources WHERE name = 'gone'"
ok $? "an unreadable topic shows in the status"
broker_cmd topic-error gone 0 >/dev/null
produce_json gone 1 10
wait_for_sql 30 $db "SELECT count(*) = 10 FROM events WHERE body LIKE 'event %'"
ok $? "once the topic is readable the source streams it"
q $db "SELECT pipeline.drop_kafka_source('gone')" >/dev/null

# an offset deleted by retention (the test broker keeps ~5 MiB per partition)
q $db "TRUNCATE events"
q $db "SELECT pipeline.create_kafka_source('small', '$BROKER_BOOTSTRAP', 'small', 'events', 'json')" >/dev/null
wait_for_sql 10 $db "SELECT count(*) = 1 FROM pipeline.kafka_offsets"
q $db "SELECT pipeline.pause_kafka_source('small')" >/dev/null
wait_for_sql 10 $db "SELECT $WORKER_COUNT = 0"
seq 1 80000 | awk '{ printf "{\"id\": %d, \"body\": \"%0100d\"}\n", $1, $1 }' |
	kcat -b "$BROKER_BOOTSTRAP" -P -t small -X queue.buffering.max.messages=1000000
low=$(kcat -b "$BROKER_BOOTSTRAP" -Q -t small:0:-2 2>/dev/null | grep -o 'offset [0-9]*' | grep -o '[0-9]*')
[ "${low:-0}" -gt 0 ]
ok $? "the broker deleted the oldest messages (first offset now ${low:-?})"
q $db "SELECT pipeline.resume_kafka_source('small')" >/dev/null
wait_for_sql 30 $db "SELECT NOT enabled FROM pipeline.kafka_sources WHERE name = 'small'"
ok $? "resuming at a deleted offset pauses the source instead of skipping"
q $db "SELECT last_error FROM pipeline.kafka_status WHERE source = 'small'" | grep -q 'out of range'
ok $? "the status says the offset is out of range and what to do"
q $db "SELECT pipeline.reset_kafka_source('small', 'earliest'); SELECT pipeline.resume_kafka_source('small')" >/dev/null
wait_for_sql 60 $db "SELECT count(*) > 0 AND max(id) = 80000 FROM events"
ok $? "after a reset to earliest it streams again"

q $db "SELECT pipeline.drop_kafka_source('small')" >/dev/null

# offsets past the end of two partitions (a typo in an explicit reset) while
# the other two have messages to read: the worker pauses the source at the
# first error and must still exit though messages after it are in its hands
# (librdkafka's shutdown waits for every message the application holds)
q $db "TRUNCATE events"
q $db "SELECT pipeline.create_kafka_source('quad', '$BROKER_BOOTSTRAP', 'quad', 'events', 'json')" >/dev/null
produce_json quad 1 4000
wait_for_sql 30 $db "SELECT count(*) = 4000 FROM events"
q $db "SELECT pipeline.pause_kafka_source('quad')" >/dev/null
wait_for_sql 10 $db "SELECT $WORKER_COUNT = 0"
q $db "SELECT pipeline.reset_kafka_source('quad', '{\"0\": 1200, \"1\": 1180, \"2\": 0, \"3\": 0}');
       SELECT pipeline.resume_kafka_source('quad')" >/dev/null
wait_for_sql 30 $db "SELECT NOT enabled FROM pipeline.kafka_sources WHERE name = 'quad'"
ok $? "offsets past the end of partitions pause the source"
wait_for_sql 30 $db "SELECT $WORKER_COUNT = 0"
ok $? "and its worker exits"

broker_stop
q "DROP DATABASE $db WITH (FORCE)" >/dev/null
done_testing
