# The README's demo command leaves a cluster you can connect to plus a Kafka
# test broker, and the stop command removes both.
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/tap.sh

plan 17

export DEMO_DIR
DEMO_DIR=$(mktemp -d)
export DEMO_SKIP_BUILD=1 # test/run has just built and installed
trap 'bash test/demo stop >/dev/null 2>&1' EXIT

out=$(bash test/demo start 2>&1)
ok $? "demo start succeeds"
echo "$out" | grep -q "psql -h $DEMO_DIR/run -p [0-9]* -U postgres demo"
ok $? "it prints how to connect with psql"

port=$(cat "$DEMO_DIR/port")
is "$(psql -X -At -h "$DEMO_DIR/run" -p "$port" -U postgres -d demo \
	-c "SELECT kind FROM pipeline.workers WHERE database = 'demo' AND kind = 'supervisor'")" supervisor \
	"psql connects and the demo database has its supervisor"

kcat -b "$(cat "$DEMO_DIR/kafka.bootstrap")" -L -m 5 2>/dev/null | grep -q 'topic "pageviews" with 4 partitions'
ok $? "the demo broker answers kcat"

first=$(psql -X -At -h "$DEMO_DIR/run" -p "$port" -U postgres -d demo -c "SELECT count(*) FROM pageviews")
deadline=$((SECONDS + 20))
until [ "$(psql -X -At -h "$DEMO_DIR/run" -p "$port" -U postgres -d demo -c "SELECT count(*) > $first + 5 FROM pageviews")" = t ] ||
	[ "$SECONDS" -ge "$deadline" ]; do sleep 0.5; done
[ "$(psql -X -At -h "$DEMO_DIR/run" -p "$port" -U postgres -d demo -c "SELECT count(*) > $first + 5 FROM pageviews")" = t ]
ok $? "a live stream lands in the demo's pageviews table"

is "$(psql -X -At -h "$DEMO_DIR/run" -p "$port" -U postgres -d demo \
	-c "SELECT (SELECT sum(views) FROM views_per_minute) = (SELECT count(*) FROM pageviews)")" t \
	"the demo's live aggregate counts every page view"

is "$(psql -X -At -h "$DEMO_DIR/run" -p "$port" -U postgres -d demo \
	-c "SELECT sum(revenue) FROM retail.daily_sales_report")" \
	"$(psql -X -At -h "$DEMO_DIR/run" -p "$port" -U postgres -d pos \
	-c "SELECT sum(amount) FROM transactions WHERE store_id IS NOT NULL AND qty > 0")" \
	"the demo's retail report totals the POS database's good sales"

# the fintech case: the live card stream is scored by the trained model as it lands
for _ in $(seq 150); do
	[ "$(psql -X -At -h "$DEMO_DIR/run" -p "$port" -U postgres -d demo \
		-c "SELECT count(score) > 20 FROM fintech.cards_scores WHERE tx_time >= '2018-05-31'")" = t ] && break
	sleep 0.2
done
is "$(psql -X -At -h "$DEMO_DIR/run" -p "$port" -U postgres -d demo \
	-c "SELECT count(score) > 20 FROM fintech.cards_scores WHERE tx_time >= '2018-05-31'")" t \
	"the demo's live card stream is scored as it lands"
is "$(psql -X -At -h "$DEMO_DIR/run" -p "$port" -U postgres -d demo \
	-c "SELECT (SELECT sum(transactions) FROM fintech.daily_card_totals WHERE day < '2018-05-31')
	           = (SELECT count(*) FROM fintech.simulated WHERE tx_time < '2018-05-31')
	       AND (SELECT count(*) FROM fintech.alert_outcomes) > 0
	       AND (SELECT model_version FROM pipeline.fraud_scorer_status WHERE scorer = 'cards') = 1")" t \
	"the demo's compliance reports total the scored history, and a model scores"
for _ in $(seq 100); do
	[ "$(psql -X -At -h "$DEMO_DIR/run" -p "$port" -U postgres -d demo \
		-c "SELECT produced_rows > 0 FROM pipeline.kafka_sink_status WHERE name = 'card_alerts_out'")" = t ] && break
	sleep 0.2
done
is "$(kcat -b "$(cat "$DEMO_DIR/kafka.bootstrap")" -C -t card-alerts -c 1 -e -q 2>/dev/null | grep -c '"action"')" 1 \
	"the demo's alerts reach the topic card-alerts"

# the web case: history with an error spike and a bot, detected; the live stream lands;
# every query of the Grafana dashboard runs (its time filter macro replaced)
is "$(psql -X -At -h "$DEMO_DIR/run" -p "$port" -U postgres -d demo \
	-c "SELECT string_agg(detector || ' ' || (SELECT string_agg(v, ',') FROM jsonb_each_text(series) s(k, v)), '; ' ORDER BY detector)
	      FROM web.alerts")" "bots 203.0.113.66; page_errors /" \
	"the demo's web history raises its two incidents"
live="SELECT count(*) FILTER (WHERE o.next_offset > 0) || ' ' || (SELECT count(*) FROM pipeline.kafka_dead_letters d
               WHERE d.source_name IN ('web_events', 'web_logs'))
        FROM pipeline.kafka_offsets o JOIN pipeline.kafka_sources k ON k.id = o.source_id
       WHERE k.name IN ('web_events', 'web_logs')"
for _ in $(seq 100); do
	[ "$(psql -X -At -h "$DEMO_DIR/run" -p "$port" -U postgres -d demo -c "$live")" = "2 0" ] && break
	sleep 0.2
done
is "$(psql -X -At -h "$DEMO_DIR/run" -p "$port" -U postgres -d demo -c "$live")" "2 0" \
	"the demo's live page views stream in from topic web (JSON) and web-logs (access log lines), none rejected"
time_filter="s/\\\$__timeFilter\(([a-z_]+)\)/\1 > now() - interval '6 hours'/g"
failed_queries=0
queries=0
while IFS= read -r sql; do
	queries=$((queries + 1))
	sql=$(printf '%s\n' "$sql" | sed -E "$time_filter")
	rows=$(psql -X -At -v ON_ERROR_STOP=1 -h "$DEMO_DIR/run" -p "$port" -U postgres -d demo -c "$sql" 2>&1) ||
		{ failed_queries=$((failed_queries + 1)); echo "# failed: $sql: $rows"; }
	[ -n "$rows" ] || { failed_queries=$((failed_queries + 1)); echo "# no rows: $sql"; }
done < <(jq -r '.panels[].targets[].rawSql' dashboards/web_activity.json)
is "$queries $failed_queries" "10 0" "every query of the Grafana dashboard runs on the demo's data and returns rows"
is "$(psql -X -At -h "$DEMO_DIR/run" -p "$port" -U postgres -d demo -c "SELECT count(*) FROM web.dashboard")" 20 \
	"the psql dashboard shows the last 20 minutes"

bash test/demo stop >/dev/null 2>&1
ok $? "demo stop succeeds"
[ ! -e "$DEMO_DIR" ]
ok $? "and removes the demo folder"
psql -X -At -h "$DEMO_DIR/run" -p "$port" -U postgres -d demo -c "SELECT 1" >/dev/null 2>&1
[ $? -ne 0 ]
ok $? "the demo cluster is gone"
done_testing
