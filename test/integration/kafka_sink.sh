# Kafka sinks: a table's committed rows produced to a topic in order, by a
# job, each once while the broker is up; while it is down the runs fail with
# the reason and record nothing, and the rows follow once it is back.
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/tap.sh
. test/lib/pg.sh
. test/lib/broker.sh

plan 10
db=kafka_sink

fresh_database $db
broker_start -n 1 outbox:3 alerts:1
q "DROP ROLE IF EXISTS sinker" >/dev/null 2>&1
q "DROP ROLE IF EXISTS sink_other" >/dev/null 2>&1
q "CREATE ROLE sinker LOGIN" >/dev/null
q "CREATE ROLE sink_other LOGIN" >/dev/null
q $db "GRANT CREATE ON SCHEMA public TO sinker" >/dev/null
as() { psql -X -q -At -v ON_ERROR_STOP=1 -d $db -c "SET ROLE $1" -c "$2"; }

as sinker "CREATE TABLE outbox (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, customer bigint, body text)"
as sinker "SELECT pipeline.create_kafka_sink('out', 'outbox', '$BROKER_BOOTSTRAP', 'outbox',
             '{\"key_column\": \"customer\", \"kafka_properties\": {\"message.timeout.ms\": \"2000\"}}')" >/dev/null
as sinker "SELECT pipeline.schedule_job('out_job', '@every 1 second', \$\$SELECT pipeline.run_kafka_sink('out')\$\$)" >/dev/null
as sinker "INSERT INTO outbox (customer, body) SELECT i % 7, 'row ' || i FROM generate_series(1, 1000) i"
wait_for_sql 30 $db "SELECT produced_rows = 1000 FROM pipeline.kafka_sink_status WHERE name = 'out'"
ok $? "a job produces the table's rows"

consume() { kcat -b "$BROKER_BOOTSTRAP" -C -t "$1" -e -q -f '%k\t%h\t%s\n' 2>/dev/null; }
consume outbox >"$BROKER_DIR/out1"
is "$(wc -l <"$BROKER_DIR/out1") $(cut -f2 "$BROKER_DIR/out1" | sort -u | wc -l)" "1000 1000" \
	"each row is one message, with its position in a header"
is "$(awk -F'\t' '{ split($2, h, "="); if ($3 !~ ("\"id\": " h[2] "[,}]") || $3 !~ ("\"customer\": " $1 "[,}]")) bad++ } END { print bad + 0 }' "$BROKER_DIR/out1")" 0 \
	"a message is the row as JSON, keyed by its customer"
is "$(q $db "SELECT produced_position FROM pipeline.kafka_sink_status WHERE name = 'out'")" 1000 \
	"the status shows the last position produced"

# the broker goes away: runs fail with the reason, nothing is recorded as produced
broker_cmd down 1 >/dev/null
as sinker "INSERT INTO outbox (customer, body) SELECT i % 7, 'late ' || i FROM generate_series(1, 100) i"
wait_for_sql 30 $db "SELECT count(*) > 0 FROM pipeline.job_runs r JOIN pipeline.jobs j ON j.id = r.job_id
                     WHERE j.name = 'out_job' AND r.error LIKE 'kafka sink \"out\" could not produce%'"
ok $? "while the broker is down a run fails with the reason"
is "$(q $db "SELECT produced_rows FROM pipeline.kafka_sink_status WHERE name = 'out'")" 1000 \
	"and records nothing as produced"
broker_cmd up 1 >/dev/null
wait_for_sql 60 $db "SELECT produced_rows = 1100 FROM pipeline.kafka_sink_status WHERE name = 'out'"
ok $? "once it is back the rows follow"
consume outbox >"$BROKER_DIR/out2"
is "$(cut -f2 "$BROKER_DIR/out2" | sort -u | wc -l)" 1100 "every row reached the topic"
as sinker "SELECT pipeline.unschedule_job('out_job')" >/dev/null

# another role cannot run, see or drop the sink
is "$(as sink_other "SELECT pipeline.run_kafka_sink('out')" 2>&1 | head -n 1)" 'ERROR:  kafka sink "out" does not exist' \
	"another role cannot run the sink"

# fraud alerts: the alerts table's identity orders the sink by default
as sinker "CREATE TABLE card_tx (transaction_id bigint, tx_time timestamptz, customer_id bigint, terminal_id bigint, amount numeric)"
as sinker "SELECT pipeline.create_fraud_scorer('cards', 'card_tx', '{\"notify_channel\": null}')" >/dev/null
as sinker "SELECT pipeline.add_fraud_rule('cards', 'big', 'customer', 'max', '1 day', '>=', 1000)" >/dev/null
as sinker "SELECT pipeline.create_kafka_sink('alerts_out', 'cards_alerts', '$BROKER_BOOTSTRAP', 'alerts')" >/dev/null
as sinker "INSERT INTO card_tx SELECT i, '2026-01-01'::timestamptz + i * interval '1 minute', i % 5, 1, CASE WHEN i % 10 = 0 THEN 5000 ELSE 10 END
           FROM generate_series(1, 100) i"
alerts=$(q $db "SELECT count(*) FROM cards_alerts")
is "$(as sinker "SELECT pipeline.run_kafka_sink('alerts_out')")|$(consume alerts | grep -c '"rules": \["big"\]')|$alerts" "19|19|19" \
	"fraud alerts go to a topic with their reasons"

q "DROP DATABASE $db WITH (FORCE)" >/dev/null
q "DROP ROLE sinker" >/dev/null
q "DROP ROLE sink_other" >/dev/null
