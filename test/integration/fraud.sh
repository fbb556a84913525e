# Fraud scoring inside a Kafka source's batches: a stream of simulated card
# transactions read through worker kills (SIGKILL) is scored exactly as the
# same transactions inserted in one order by SQL (scores, features, rule hits
# and state equal, row for row), also when a batch rolls back inside the
# scorer; a rule added while the stream runs applies from the next batch;
# alerts are sent by NOTIFY once their batch commits.
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/tap.sh
. test/lib/pg.sh
. test/lib/broker.sh

plan 11
db=fraud
export PGTZ=UTC

q "ALTER SYSTEM SET pg_pipeline.restart_backoff_max = '2s'" && q "SELECT pg_reload_conf()" >/dev/null
fresh_database $db
q $db "CREATE TABLE simulated AS SELECT transaction_id, tx_time AT TIME ZONE 'UTC' AS tx_time, customer_id, terminal_id,
                                          amount::numeric(10, 2) AS amount, is_fraud
                                     FROM pipeline.simulate_transactions(300, 600, 24, 7)"
total=$(q $db "SELECT count(*) FROM simulated")
half=$(q $db "SELECT transaction_id FROM simulated WHERE tx_time >= '2018-04-13' ORDER BY transaction_id LIMIT 1")
diag "$total simulated transactions, the second part from id $half"

# the same model and the same scorer over a table fed by Kafka and one fed by SQL
model=$(q $db "SELECT jsonb_build_object('features', to_jsonb(pipeline.fraud_feature_names()),
                 'means', (SELECT jsonb_agg(0) FROM generate_series(1, 20)),
                 'stds', (SELECT jsonb_agg(1) FROM generate_series(1, 20)),
                 'weights', (SELECT jsonb_agg(CASE n WHEN 'log_amount' THEN 1 WHEN 'terminal_risk_1d' THEN 4
                                                     WHEN 'amount_zscore' THEN 0.5 ELSE 0 END)
                               FROM unnest(pipeline.fraud_feature_names()) n),
                 'intercept', -6)")
for t in streamed reference; do
	q $db "CREATE TABLE ${t}_tx (LIKE simulated)"
	q $db "SELECT pipeline.create_fraud_scorer('$t', '${t}_tx', '{\"label_column\": \"is_fraud\", \"alert_threshold\": 0.9}')" >/dev/null
	q $db "SELECT pipeline.import_fraud_model('$t', '$model')" >/dev/null
done

# the reference: the first part, the rule, the second part, in id order, by SQL in odd chunks
q $db "SELECT format('INSERT INTO reference_tx SELECT * FROM simulated WHERE transaction_id >= %s AND transaction_id < %s ORDER BY transaction_id;',
                     lo, least(lo + 777, $half)) FROM generate_series(0, $half - 1, 777) lo" | psql -X -q -d $db -v ON_ERROR_STOP=1 >/dev/null
q $db "SELECT pipeline.add_fraud_rule('reference', 'burst', 'customer', 'count', '2 hours', '>=', 3, '{\"action\": \"review\", \"weight\": 1.5}')" >/dev/null
q $db "SELECT format('INSERT INTO reference_tx SELECT * FROM simulated WHERE transaction_id >= %s AND transaction_id < %s ORDER BY transaction_id;',
                     lo, lo + 777) FROM generate_series($half, $total - 1, 777) lo" | psql -X -q -d $db -v ON_ERROR_STOP=1 >/dev/null

# produce PREDICATE: the simulated rows matching it, as JSON keyed by id, in id order
produce() {
	q $db "SELECT transaction_id || ':' || json_build_object('transaction_id', transaction_id, 'tx_time', tx_time,
	           'customer_id', customer_id, 'terminal_id', terminal_id, 'amount', amount, 'is_fraud', is_fraud)
	         FROM simulated WHERE $1 ORDER BY transaction_id" |
		kcat -b "$BROKER_BOOTSTRAP" -P -t cards -K:
}

broker_start cards:1
q $db "SELECT pipeline.create_kafka_source('cards', '$BROKER_BOOTSTRAP', 'cards', 'streamed_tx', 'json',
        '{\"batch_size\": 100, \"max_batch_latency_ms\": 50}')" >/dev/null
produce "transaction_id < $half"
kills=0
for i in 1 2; do
	wait_for_sql 30 $db "SELECT $WORKER_COUNT > 0 AND count(*) > $((i * half / 4)) FROM streamed_tx"
	pid=$(source_workers $db | head -n 1)
	if [ -n "$pid" ] && kill -KILL "$pid"; then kills=$((kills + 1)); fi
	sleep 1
	wait_until 30 q "SELECT 1"
done
is "$kills" 2 "the source worker was killed twice while scoring"
wait_for_sql 90 $db "SELECT count(*) >= $half FROM streamed_tx"
ok $? "the first part of the stream is stored"

# a rule added while the source runs: every later message is scored with it
q $db "SELECT pipeline.add_fraud_rule('streamed', 'burst', 'customer', 'count', '2 hours', '>=', 3, '{\"action\": \"review\", \"weight\": 1.5}')" >/dev/null
# a transaction id already scored, in the middle of the second part: its
# batch fails inside the scorer and rolls back (the state the worker cached
# for it included), the source isolates it as a dead letter, the rest is scored
produce "transaction_id >= $half AND transaction_id < $half + 2000"
q $db "SELECT transaction_id || ':' || json_build_object('transaction_id', transaction_id, 'tx_time', tx_time,
           'customer_id', customer_id, 'terminal_id', terminal_id, 'amount', amount, 'is_fraud', is_fraud)
         FROM simulated WHERE transaction_id = 5" | kcat -b "$BROKER_BOOTSTRAP" -P -t cards -K:
produce "transaction_id >= $half + 2000"
wait_for_sql 90 $db "SELECT count(*) >= $total FROM streamed_tx"
ok $? "the whole stream is stored"
sleep 1

is "$(q $db "SELECT count(*) || ' ' || count(DISTINCT transaction_id) FROM streamed_scores")" "$total $total" \
	"each transaction is scored once"
is "$(q $db "SELECT count(*) FROM (SELECT transaction_id, score, features, rules FROM streamed_scores
                                   EXCEPT SELECT transaction_id, score, features, rules FROM reference_scores) d")" 0 \
	"scores, features and rule hits equal those of the same stream inserted by SQL"
# the state as of now: the test's session rebuilds each scorer's from its last
# checkpoint and the scores since (the worker's last checkpoint is up to
# pg_pipeline.fraud_checkpoint_interval old), and writes it.  A card's state
# holds the rule's window after its id, which differs between the two
# scorers; kind v is the checkpoint row
q $db "SELECT pipeline.checkpoint_fraud_scorer('streamed'), pipeline.checkpoint_fraud_scorer('reference')" >/dev/null
state="SELECT kind, entity, CASE WHEN length(state) > $(q $db "SELECT pipeline.fraud_state_bytes(true)") AND kind = 'c'
       THEN substr(state, 1, $(q $db "SELECT pipeline.fraud_state_bytes(true)")) || substr(state, $(q $db "SELECT pipeline.fraud_state_bytes(true)") + 9)
       ELSE state END"
is "$(q $db "SELECT count(*) FROM ($state FROM streamed_state WHERE kind <> 'v' EXCEPT $state FROM reference_state) d")" 0 \
	"the per-card and per-terminal state equals the reference's"
is "$(q $db "SELECT count(*) FROM (SELECT transaction_id, action, reasons FROM streamed_alerts
                                   EXCEPT SELECT transaction_id, action, reasons FROM reference_alerts) d")" 0 \
	"the alerts equal the reference's"
is "$(q $db "SELECT count(*) FILTER (WHERE transaction_id < $half AND 'burst' = ANY (rules)) || ' '
              || (count(*) FILTER (WHERE transaction_id >= $half AND 'burst' = ANY (rules)) > 0)
              FROM streamed_scores")" "0 true" \
	"the rule fires only on messages read after it was added"
is "$(q $db "SELECT count(*) > 0 FROM streamed_alerts WHERE action = 'review'")" t \
	"rule hits raise alerts with the rule's action"

# NOTIFY reaches listeners once the batch commits
notified=$(psql -X -d $db -c "LISTEN pipeline_fraud_alerts" \
	-c "INSERT INTO reference_tx VALUES (9999999, '2018-05-01 10:00', 1, 1, 10, false), (9999998, '2018-05-01 10:01', 1, 1, 10, false), (9999997, '2018-05-01 10:02', 1, 1, 10, false)" \
	-c "SELECT 1" 2>&1)
like "$notified" 'Asynchronous notification "pipeline_fraud_alerts" with payload "\{"scorer": "reference", "transaction_id": 9999997, "score": [0-9.]+, "action": "review"\}"' \
	"an alert is notified on pipeline_fraud_alerts with its transaction and action"
like "$(q $db "SELECT count(*) || ' ' || min(\"offset\") || ' ' || min(error) FROM pipeline.kafka_dead_letters")" \
	"^1 $((half + 2000)) duplicate key value violates unique constraint" \
	"the repeated transaction is the one dead letter, with the reason"

broker_stop
q "DROP DATABASE $db WITH (FORCE)" >/dev/null
q "ALTER SYSTEM RESET pg_pipeline.restart_backoff_max" && q "SELECT pg_reload_conf()" >/dev/null
done_testing
