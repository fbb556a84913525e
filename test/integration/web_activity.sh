# The web activity case: simulated page views with three injected incidents
# (an error spike on one page, a traffic drop, a bot burst from one address)
# stream from Kafka into per-minute aggregates watched by detectors, through
# a kill -9 of the source worker.  Each incident is detected within two
# windows of its start, once, and nothing else is; the same traffic
# without incidents raises no alert; the case study's setup without the hll
# and tdigest sketches counts distinct users exactly.
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/tap.sh
. test/lib/pg.sh
. test/lib/broker.sh

plan 10
broker_start -n 1 web:1 quiet:1
# The kill -9 below restarts the cluster, which loses batches committed
# asynchronously but not yet flushed (they are read again from Kafka).  The
# test broker keeps only a few megabytes a partition, and each chunk is
# produced once the one before is stored: so stored must mean durable here.
q "ALTER SYSTEM SET pg_pipeline.source_synchronous_commit = on" >/dev/null && q "SELECT pg_reload_conf()" >/dev/null
START="2026-01-05 09:00:00+00"

# pipeline DB TOPIC: the tables, aggregates and detectors, fed by TOPIC
pipeline() {
	fresh_database "$1"
	q "$1" "CREATE TABLE events (event_time timestamptz, page text, user_id bigint, client_ip text, country text,
	                             user_agent text, status integer, latency_ms double precision, bytes integer)" >/dev/null
	q "$1" "SELECT pipeline.create_aggregate('page_minute', \$\$
	            SELECT page, date_trunc('minute', event_time) AS minute, count(*) AS views,
	                   count(*) FILTER (WHERE status >= 500) AS errors FROM events GROUP BY page, minute\$\$);
	        SELECT pipeline.create_aggregate('site_minute', \$\$
	            SELECT date_trunc('minute', event_time) AS minute, count(*) AS views FROM events GROUP BY minute\$\$);
	        SELECT pipeline.create_aggregate('client_minute', \$\$
	            SELECT client_ip, date_trunc('minute', event_time) AS minute, count(*) AS requests
	              FROM events GROUP BY client_ip, minute\$\$);
	        SELECT pipeline.create_detector('site_traffic', 'site_minute', 'views',
	            '{\"time_column\": \"minute\", \"window\": \"1 minute\", \"direction\": \"drop\", \"threshold\": 5}');
	        SELECT pipeline.create_detector('page_errors', 'page_minute', 'errors',
	            '{\"time_column\": \"minute\", \"window\": \"1 minute\", \"series\": [\"page\"], \"direction\": \"spike\",
	              \"threshold\": 5, \"min_stddev\": 2, \"min_volume\": 5}');
	        SELECT pipeline.create_detector('bots', 'client_minute', 'requests',
	            '{\"time_column\": \"minute\", \"window\": \"1 minute\", \"series\": [\"client_ip\"], \"direction\": \"spike\",
	              \"min_volume\": 50, \"missing_as_zero\": false, \"new_series\": \"population\"}');
	        SELECT pipeline.create_kafka_source('web', '$BROKER_BOOTSTRAP', '$2', 'events', 'json', '{\"batch_size\": 20000}')" >/dev/null
}

# stream DB TOPIC INCIDENTS [KILL_AFTER]: 121 minutes of traffic (the last
# one closes the 120th), produced in chunks the test broker keeps (it drops a
# partition's oldest messages past a few megabytes), each once the source has
# stored the one before; the source worker is killed right after chunk KILL_AFTER
stream() {
	local dir chunk produced=0 i=0
	dir=$(mktemp -d)
	q postgres "COPY (SELECT json_build_object('event_time', event_time, 'page', page, 'user_id', user_id,
	                   'client_ip', client_ip, 'country', country, 'user_agent', user_agent, 'status', status,
	                   'latency_ms', latency_ms, 'bytes', bytes)
	              FROM pipeline.simulate_web_traffic(121, 1000, 7, '$START', '$3')) TO STDOUT" |
		split -l 12000 - "$dir/chunk."
	for chunk in "$dir"/chunk.*; do
		kcat -b "$BROKER_BOOTSTRAP" -P -t "$2" -X queue.buffering.max.messages=1000000 <"$chunk"
		produced=$((produced + $(wc -l <"$chunk")))
		i=$((i + 1))
		if [ "$i" = "${4:-0}" ]; then
			sleep 0.2
			pid=$(source_workers "$1" | head -n 1)
			[ -n "$pid" ] && kill -KILL "$pid" && echo killed >"$dir/killed"
			wait_until 30 q "SELECT 1"
		fi
		wait_for_sql 60 "$1" "SELECT count(*) >= $produced FROM events"
	done
	[ -e "$dir/killed" ]
	local killed=$?
	rm -rf "$dir"
	return $killed
}
q postgres "CREATE EXTENSION IF NOT EXISTS pg_pipeline" >/dev/null 2>&1
incidents='[{"kind": "error_spike", "page": "/checkout", "start_minute": 60, "minutes": 5, "size": 0.5},
            {"kind": "traffic_drop", "start_minute": 80, "minutes": 4, "size": 0.6},
            {"kind": "bot_burst", "client_ip": "203.0.113.7", "start_minute": 100, "minutes": 3, "size": 600}]'
total=$(q postgres "SELECT count(*) FROM pipeline.simulate_web_traffic(121, 1000, 7, '$START', '$incidents')")

pipeline web_incidents web
stream web_incidents web "$incidents" 5
ok $? "the source worker is killed mid-stream"
wait_for_sql 60 web_incidents "SELECT count(*) = $total FROM events"
ok $? "every event is stored once ($total)"

alerts="SELECT string_agg(format('%s %s %s %s', d, series, direction,
                                 to_char(started_at AT TIME ZONE 'UTC', 'HH24:MI')), '; ' ORDER BY d, started_at)
          FROM (SELECT 'site_traffic' d, * FROM site_traffic_alerts UNION ALL
                SELECT 'page_errors', * FROM page_errors_alerts UNION ALL SELECT 'bots', * FROM bots_alerts) a"
is "$(q web_incidents "SELECT count(*) FROM page_errors_alerts WHERE series->>'page' = '/checkout'
                        AND started_at BETWEEN '$START'::timestamptz + interval '60 minutes' AND '$START'::timestamptz + interval '62 minutes'")" 1 \
	"the error spike on /checkout is one alert, raised within two windows of its start"
is "$(q web_incidents "SELECT count(*) FROM site_traffic_alerts WHERE direction = 'drop'
                        AND started_at BETWEEN '$START'::timestamptz + interval '80 minutes' AND '$START'::timestamptz + interval '82 minutes'")" 1 \
	"the traffic drop is one alert, raised within two windows of its start"
is "$(q web_incidents "SELECT count(*) FROM bots_alerts WHERE series->>'client_ip' = '203.0.113.7'
                        AND started_at BETWEEN '$START'::timestamptz + interval '100 minutes' AND '$START'::timestamptz + interval '102 minutes'")" 1 \
	"the bot burst is one alert on its address, raised within two windows of its start"
is "$(q web_incidents "$alerts")" \
	'bots {"client_ip": "203.0.113.7"} spike 10:40; page_errors {"page": "/checkout"} spike 10:00; site_traffic {} drop 10:20' \
	"and nothing else raised an alert"
is "$(q web_incidents "SELECT count(*) FILTER (WHERE status = 'closed') || '/' || count(*)
                        FROM (SELECT status FROM site_traffic_alerts UNION ALL SELECT status FROM page_errors_alerts
                              UNION ALL SELECT status FROM bots_alerts) a")" "3/3" \
	"each incident is closed when its series is back to normal"

pipeline web_quiet quiet
stream web_quiet quiet '[]'
quiet_total=$(q postgres "SELECT count(*) FROM pipeline.simulate_web_traffic(121, 1000, 7, '$START', '[]')")
wait_for_sql 120 web_quiet "SELECT count(*) = $quiet_total FROM events"
ok $? "the control run is stored"
is "$(q web_quiet "$alerts")" "" "the same traffic without incidents raises no alert"

# the case study's own setup without the hll and tdigest sketches: distinct
# users per minute are exact (with them, hll estimates: the demo's test)
fresh_database web_exact
psql -X -q -v ON_ERROR_STOP=1 -d web_exact -v brokers="$BROKER_BOOTSTRAP" -v exact_audience=1 \
	-f dashboards/web_activity.sql >/dev/null
is "$(q web_exact "SELECT count(*) || ' ' || count(*) FILTER (WHERE a.users = e.users AND a.p50_latency_ms IS NULL)
                   FROM web.audience a JOIN (SELECT date_trunc('minute', event_time) AS minute, count(DISTINCT user_id) AS users
                                               FROM web.events GROUP BY 1) e USING (minute)")" "180 180" \
	"without the sketch extensions, web.audience counts each minute's distinct users exactly"

q "DROP DATABASE web_incidents WITH (FORCE)" >/dev/null
q "DROP DATABASE web_quiet WITH (FORCE)" >/dev/null
q "DROP DATABASE web_exact WITH (FORCE)" >/dev/null
q "ALTER SYSTEM RESET pg_pipeline.source_synchronous_commit" >/dev/null && q "SELECT pg_reload_conf()" >/dev/null
