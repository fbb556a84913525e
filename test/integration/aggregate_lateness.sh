# allowed_lateness on an aggregate fed by a Kafka source that keeps no rows:
# a streamed event older than the latest time key in the states minus the
# allowed lateness goes to <output>_late, in the same transaction; the others
# merge into their own bucket, late or not.  Every event lands exactly once.
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/tap.sh
. test/lib/pg.sh
. test/lib/broker.sh

plan 6
db=aggregate_lateness

fresh_database $db
broker_start -n 1 late:1

q $db "CREATE TABLE events (ts timestamptz, page text, v integer)"
q $db "SELECT pipeline.create_aggregate('per_minute', \$\$
        SELECT page, date_trunc('minute', ts) AS minute, count(*) AS n, sum(v) AS total
          FROM events WHERE v >= 0 GROUP BY 1, 2\$\$, '{\"allowed_lateness\": \"5 minutes\"}')" >/dev/null
q $db "SELECT pipeline.create_kafka_source('late', '$BROKER_BOOTSTRAP', 'late', 'events', 'json',
        '{\"store_rows\": false, \"max_batch_latency_ms\": 50}')" >/dev/null

# produce one batch (lines on stdin) and wait until its offsets are committed
batch() {
	kcat -b "$BROKER_BOOTSTRAP" -P -t late
	wait_for_sql 30 $db "SELECT coalesce(sum(next_offset), 0) = $1 FROM pipeline.kafka_offsets"
}
ev() { printf '{"ts": "2026-11-30T%s:00Z", "page": "%s", "v": %s}\n' "$1" "$2" "$3"; }

# batch 1: 10:00 .. 10:20, the latest minute is 10:20, so events before 10:15 are late from now on
for m in $(seq 0 20); do ev "10:$(printf %02d "$m")" a 1; done | batch 21
# batch 2: 10:14 is late; 10:16 merges into its bucket; 10:30 is new; v < 0 is filtered, not late
{ ev 10:14 a 10; ev 10:16 a 10; ev 10:30 a 10; ev 10:01 a -1; echo '{"page": "a", "v": 10}'; } | batch 26
is "$(q $db "SELECT string_agg(to_char(minute, 'HH24:MI') || '=' || n || '/' || total, ' ' ORDER BY minute)
             FROM per_minute WHERE minute IN ('2026-11-30 10:14+00', '2026-11-30 10:16+00', '2026-11-30 10:30+00')")" \
	"10:14=1/1 10:16=2/11 10:30=1/10" "an event within the allowed lateness merges into its bucket, a later one does not"
is "$(q $db "SELECT string_agg(to_char(minute, 'HH24:MI') || ' ' || (event->>'v'), ', ') FROM per_minute_late")" \
	"10:14 10" "the late event is in the side table, with its bucket and the whole event"
is "$(q $db "SELECT n || '/' || total FROM per_minute WHERE minute IS NULL")" "1/10" \
	"an event without a time is never late"

# batch 3: the latest minute is now 10:30, so 10:24 is late and 10:26 is not
{ ev 10:24 b 5; ev 10:26 b 5; } | batch 28
is "$(q $db "SELECT string_agg(to_char(minute, 'HH24:MI'), ' ' ORDER BY minute) FROM per_minute_late")" \
	"10:14 10:24" "the horizon moves with the latest time key"
is "$(q $db "SELECT (SELECT sum(n) FROM per_minute) + (SELECT count(*) FROM per_minute_late)")" 27 \
	"every event that passes the filter is counted once: in its bucket or in the side table"
is "$(q $db "SELECT count(*) FROM events")" 0 "the source keeps no rows"

q $db "SELECT pipeline.drop_kafka_source('late')" >/dev/null
broker_stop
q "DROP DATABASE $db WITH (FORCE)" >/dev/null
done_testing
