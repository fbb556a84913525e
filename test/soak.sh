#!/usr/bin/env bash
# Soak: the three case studies together (make demo's pipelines: page views
# and web activity from Kafka into aggregates and detectors, card
# transactions scored for fraud with alerts to Kafka, the retail import
# graph over postgres_fdw run every half minute on new POS sales) for a
# given time at a given rate against the test broker.  Every 10 s it
# samples each kind of worker's private memory (RssAnon), the Kafka lag, the
# end-to-end latency of page views, dead letters and failed job runs into a
# CSV.  At the end the streams stop, the pipelines drain, and it prints a
# verdict (exit status 1 if any fails):
#   - memory: each worker kind's RssAnon at the end within 5 % of its value
#     after the warm-up (not judged when the server runs with the sanitizers,
#     make test SANITIZE=1);
#   - lag: the mean lag of the last third of the samples no higher than the
#     first third's plus one second of messages;
#   - exactly once: every page view and card transaction the broker holds is
#     stored once (rows = committed offsets = distinct offsets / ids), and
#     every good POS sale is in the retail tables once.
#
#   bash test/soak.sh [MINUTES] [RATE]    default 30 minutes, 50 messages a second per stream
#   SOAK_CSV=file (default soak.csv)  SOAK_WARMUP=seconds (default a sixth of the run)
#
# Not part of make test; test/integration/soak.sh runs 2 minutes of it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

MINUTES=${1:-30}
RATE=${2:-50}
CSV=${SOAK_CSV:-$ROOT/soak.csv}
DURATION=$((MINUTES * 60))
WARMUP=${SOAK_WARMUP:-$((DURATION / 6))}
export DEMO_DIR=${SOAK_DIR:-$(mktemp -d /tmp/pipeline_soak.XXXXXX)}
rmdir "$DEMO_DIR" 2>/dev/null || true
# card transactions: the demo's simulation holds about 75,000 after the history
export DEMO_PAGEVIEWS_RATE=$RATE DEMO_WEB_RATE=$RATE DEMO_CARDS_RATE=$((RATE < 40 ? RATE : 40))

cleanup() { bash test/demo stop >/dev/null 2>&1 || true; }
trap cleanup EXIT

echo "soak: $MINUTES min at $RATE msg/s per stream (cards $DEMO_CARDS_RATE), warm-up $WARMUP s, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
bash test/demo start >"$DEMO_DIR.start.log" 2>&1 || { cat "$DEMO_DIR.start.log"; exit 1; }
port=$(cat "$DEMO_DIR/port")
sql() { psql -X -q -At -v ON_ERROR_STOP=1 -h "$DEMO_DIR/run" -p "$port" -U postgres -d "${2:-demo}" -c "$1"; }

# private memory (kB) of the workers of a kind, summed
rss() {
	local total=0 pid kb
	for pid in $(sql "SELECT pid FROM pg_stat_activity WHERE backend_type = '$1'"); do
		kb=$(awk '/^RssAnon:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
		total=$((total + ${kb:-0}))
	done
	echo "$total"
}

pos_id=$(sql "SELECT max(id) FROM transactions" pos)
new_sales() {
	# half a minute of sales at a tenth of the rate; 1 % with a bad quantity, as in the demo
	local n=$((RATE * 3))
	sql "INSERT INTO transactions SELECT i, CASE WHEN i % 200 = 7 THEN NULL ELSE i % 10 END, i % 40,
	            CASE WHEN i % 100 = 3 THEN -1 ELSE 1 + i % 3 END, (1 + i % 3) * (5 + i % 40) * 0.25, now()
	       FROM generate_series($((pos_id + 1)), $((pos_id + n))) i" pos
	pos_id=$((pos_id + n))
	sql "SELECT pipeline.run_job('retail_import')" >/dev/null
}

echo "seconds,launcher_kb,supervisor_kb,kafka_sources_kb,pageviews_lag,cards_lag,web_lag,pageview_latency_ms,dead_letters,failed_job_runs,pageviews,cards,web_events" >"$CSV"
start=$(date +%s)
next_sales=$start
while :; do
	now=$(date +%s)
	elapsed=$((now - start))
	[ "$elapsed" -le "$DURATION" ] || break
	if [ "$now" -ge "$next_sales" ]; then
		new_sales
		next_sales=$((now + 30))
	fi
	lags=$(sql "SELECT string_agg(coalesce(l, 0)::text, ',' ORDER BY n) FROM unnest(ARRAY['pageviews', 'card_transactions', 'web_events,web_logs'])
	              WITH ORDINALITY AS s(names, n)
	              LEFT JOIN LATERAL (SELECT sum(lag) AS l FROM pipeline.kafka_status k
	                                  WHERE k.source = ANY (string_to_array(s.names, ','))) x ON true")
	stats=$(sql "SELECT round(extract(epoch FROM clock_timestamp() - (SELECT max(seen_at) FROM pageviews)) * 1000) || ',' ||
	                    (SELECT count(*) FROM pipeline.kafka_dead_letters) || ',' ||
	                    (SELECT count(*) FROM pipeline.job_runs WHERE state IN ('failed', 'timed_out')) || ',' ||
	                    (SELECT count(*) FROM pageviews) || ',' || (SELECT count(*) FROM fintech.card_tx) || ',' ||
	                    (SELECT count(*) FROM web.events)")
	echo "$elapsed,$(rss 'pg_pipeline launcher'),$(rss 'pg_pipeline supervisor'),$(rss 'pg_pipeline kafka source'),$lags,$stats" >>"$CSV"
	sleep $((10 - ($(date +%s) - now) % 10))
done

# drain: stop the streams, run the retail graph once more, wait for lag 0
for generator in generator card_generator web_generator; do
	for pid in $(cat "$DEMO_DIR/$generator.pid" 2>/dev/null); do kill -- -"$pid" 2>/dev/null || true; done
done
sql "SELECT pipeline.run_job('retail_import')" >/dev/null
for _ in $(seq 120); do
	[ "$(sql "SELECT coalesce(sum(lag), 0) FROM pipeline.kafka_status")" = 0 ] &&
		[ "$(sql "SELECT count(*) FROM pipeline.job_runs WHERE state IN ('queued', 'starting', 'running')")" = 0 ] && break
	sleep 1
done

verdict=0
check() {
	if [ "$2" = ok ]; then echo "PASS  $1"; else echo "FAIL  $1: $2"; verdict=1; fi
}
awk -F, -v warmup="$WARMUP" '
	NR > 1 && $1 >= warmup { rows[++n] = $0 }
	END {
		if (n < 2) { print "memory too few samples after the warm-up"; exit }
		split(rows[1], first, ","); split(rows[n], last, ",")
		split("launcher supervisor kafka_sources", names, " ")
		for (i = 2; i <= 4; i++) {
			growth = last[i] - first[i]
			status = (growth <= 0.05 * first[i]) ? "ok" : "grew"
			printf "memory %s %s %d kB -> %d kB (%+.1f %%)\n", names[i - 1], status, first[i], last[i],
				(first[i] > 0 ? 100 * growth / first[i] : 0)
		}
		third = int(n / 3); if (third < 1) third = 1
		for (i = 1; i <= third; i++) { split(rows[i], r, ","); a += r[5] + r[6] + r[7] }
		for (i = n - third + 1; i <= n; i++) { split(rows[i], r, ","); b += r[5] + r[6] + r[7] }
		printf "lag %s %.0f -> %.0f messages (mean of the first and last thirds)\n",
			(b / third <= a / third + rate) ? "ok" : "grew", a / third, b / third
	}' rate=$((RATE * 3)) "$CSV" >"$DEMO_DIR.verdict"
while read -r what name status rest; do
	if [ "$what" = memory ] && [ "$name" = too ]; then check "memory" "too few samples after the warm-up"; continue; fi
	if [ "$what" = memory ] && [ -n "${PG_PIPELINE_SERVER_ENV:-}" ]; then
		# a sanitizer run (test/run): ASan keeps freed memory in quarantine
		echo "SKIP  memory of the $name: $rest (AddressSanitizer's quarantine grows it)"
		continue
	fi
	if [ "$what" = memory ]; then check "memory of the $name: $rest" "$([ "$status" = ok ] && echo ok || echo "grew more than 5 %")"; fi
	if [ "$what" = lag ]; then check "Kafka lag: $status $rest" "$([ "$name" = ok ] && echo ok || echo "the lag grew")"; fi
done <"$DEMO_DIR.verdict"

pv=$(sql "SELECT count(*) || ' ' || count(DISTINCT (partition, \"offset\")) || ' ' ||
              (SELECT sum(next_offset) FROM pipeline.kafka_offsets o JOIN pipeline.kafka_sources s ON s.id = o.source_id
                WHERE s.name = 'pageviews')
              - (SELECT count(*) FROM pipeline.kafka_dead_letters WHERE source_name = 'pageviews') FROM pageviews")
read -r rows distinct committed <<<"$pv"
check "page views exactly once: $rows rows, $distinct distinct offsets, $committed committed" \
	"$([ "${rows:-0}" -gt 0 ] && [ "$rows" = "$distinct" ] && [ "$rows" = "$committed" ] && echo ok || echo "lost, doubled or none")"
cards=$(sql "SELECT count(*) || ' ' || count(DISTINCT transaction_id) || ' ' ||
                 (SELECT sum(next_offset) FROM pipeline.kafka_offsets o JOIN pipeline.kafka_sources s ON s.id = o.source_id
                   WHERE s.name = 'card_transactions')
                 - (SELECT count(*) FROM pipeline.kafka_dead_letters WHERE source_name = 'card_transactions') || ' ' ||
                 (SELECT count(*) FROM fintech.cards_scores)
               FROM fintech.card_tx WHERE tx_time >= '2018-05-31'")
read -r rows distinct committed scored <<<"$cards"
check "card transactions exactly once: $rows streamed rows, $distinct distinct, $committed committed; $scored scores in all" \
	"$([ "${rows:-0}" -gt 0 ] && [ "$rows" = "$distinct" ] && [ "$rows" = "$committed" ] && echo ok || echo "lost, doubled or none")"
web=$(sql "SELECT coalesce(sum(o.next_offset), 0) || ' ' || (SELECT count(*) FROM pipeline.kafka_dead_letters
               WHERE source_name IN ('web_events', 'web_logs'))
             FROM pipeline.kafka_offsets o JOIN pipeline.kafka_sources s ON s.id = o.source_id
            WHERE s.name IN ('web_events', 'web_logs')")
read -r web_committed web_dead <<<"$web"
check "web activity: $web_committed JSON events and access log lines committed, $web_dead dead letters" \
	"$([ "${web_committed:-0}" -gt 0 ] && [ "$web_dead" = 0 ] && echo ok || echo "none, or rejected messages")"
good=$(sql "SELECT count(*) FROM transactions WHERE store_id IS NOT NULL AND qty > 0" pos)
retail=$(sql "SELECT count(*) || ' ' || count(DISTINCT id) FROM retail.sales")
check "retail: $good good POS sales, sales table $retail" \
	"$([ "${good:-0}" -gt 0 ] && [ "$retail" = "$good $good" ] && echo ok || echo "lost, doubled or none")"
check "no failed job run" "$([ "$(sql "SELECT count(*) FROM pipeline.job_runs WHERE state IN ('failed', 'timed_out')")" = 0 ] && echo ok ||
	sql "SELECT string_agg(DISTINCT j.name || ': ' || r.error, '; ') FROM pipeline.job_runs r JOIN pipeline.jobs j ON j.id = r.job_id
	      WHERE r.state IN ('failed', 'timed_out')")"
echo "samples: $CSV"
if [ "$verdict" = 0 ]; then echo "verdict: PASS"; else echo "verdict: FAIL"; fi
exit "$verdict"
