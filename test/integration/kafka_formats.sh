# Every format lands its good rows; every bad message is in the dead-letter
# table with its offset and reason, in the same transaction as the good ones.
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/tap.sh
. test/lib/pg.sh
. test/lib/broker.sh

plan 24
db=kafka_formats

fresh_database $db
broker_start -n 1 js:3 cs:2 raw:1 txt:1 nest:1 flat:1

# --- JSON with 1 % malformed messages: 50 invalid JSON, 25 bad types, 25 CHECK violations
q $db "CREATE TABLE orders (id integer NOT NULL, customer text, amount numeric CHECK (amount >= 0),
        city text, k text, p integer, o bigint, ts timestamptz)"
q $db "SELECT pipeline.create_kafka_source('orders', '$BROKER_BOOTSTRAP', 'js', 'orders', 'json',
        '{\"columns\": {\"id\": \"id\", \"customer\": \"customer.name\", \"amount\": \"amount\", \"city\": \"customer.address.city\"},
          \"key_column\": \"k\", \"partition_column\": \"p\", \"offset_column\": \"o\", \"timestamp_column\": \"ts\",
          \"batch_size\": 1000, \"max_batch_latency_ms\": 50}')" >/dev/null
seq 1 10000 | awk '{
	if ($1 % 200 == 0)       printf "k%d:{\"id\": %d, \"customer\": {\"name\": \"c%d\"\n", $1, $1, $1
	else if ($1 % 400 == 100) printf "k%d:{\"id\": %d, \"amount\": -1}\n", $1, $1
	else if ($1 % 400 == 300) printf "k%d:{\"id\": \"x%d\", \"amount\": 1}\n", $1, $1
	else printf "k%d:{\"id\": %d, \"customer\": {\"name\": \"c%d\", \"address\": {\"city\": \"Lyon\"}}, \"amount\": %d.5, \"extra\": [1, {\"id\": 0}]}\n", $1, $1, $1, $1 % 50
}' | kcat -b "$BROKER_BOOTSTRAP" -P -t js -K:
wait_for_sql 60 $db "SELECT (SELECT count(*) FROM orders) + (SELECT count(*) FROM pipeline.kafka_dead_letters) >= 10000"
# ids 1..10000 without the 100 bad ones sum to 49500000
is "$(q $db "SELECT count(*) || ' ' || count(DISTINCT id) || ' ' || sum(id) FROM orders")" "9900 9900 49500000" \
	"all 9900 good JSON rows landed, once"
is "$(q $db "SELECT count(*) FROM pipeline.kafka_dead_letters WHERE source_name = 'orders'")" 100 \
	"all 100 bad messages are dead letters"
is "$(q $db "SELECT count(*) FROM pipeline.kafka_dead_letters WHERE error LIKE 'invalid JSON%'")" 50 \
	"50 say the JSON is invalid"
is "$(q $db "SELECT count(*) FROM pipeline.kafka_dead_letters WHERE sqlstate = '22P02' AND error LIKE 'invalid input syntax for type integer: \"x%'")" 25 \
	"25 say which value is not an integer"
is "$(q $db "SELECT count(*) FROM pipeline.kafka_dead_letters WHERE sqlstate = '23514' AND error LIKE '%orders_amount_check%'")" 25 \
	"25 name the violated CHECK constraint"
is "$(q $db "SELECT count(*) FROM pipeline.kafka_dead_letters d
             WHERE d.key = convert_to('k' || substring(convert_from(d.payload, 'UTF8') from '\"id\": \"?x?([0-9]+)'), 'UTF8')")" 100 \
	"each dead letter keeps its key and raw payload"
is "$(q $db "SELECT count(*) || ' ' || count(DISTINCT (p, o)) FROM (SELECT p, o FROM orders UNION ALL
             SELECT partition, \"offset\" FROM pipeline.kafka_dead_letters) x")" "10000 10000" \
	"rows and dead letters account for every (partition, offset) once"
is "$(q $db "SELECT sum(committed_offset) FROM pipeline.kafka_status WHERE source = 'orders'")" 10000 \
	"and the committed offsets moved past all of them"
is "$(q $db "SELECT sum(o.messages_last_minute) || ' ' || bool_and(k.messages_per_second > 0 AND k.bytes_per_second > 0)
             FROM pipeline.kafka_offsets o JOIN pipeline.kafka_sources s ON s.id = o.source_id
             JOIN pipeline.kafka_status k ON k.source = s.name AND k.partition = o.partition
             WHERE s.name = 'orders'")" "10000 true" \
	"kafka_status has each partition's messages and bytes per second over the last minute"
is "$(q $db "SELECT count(*) FROM orders WHERE k = 'k' || id AND city = 'Lyon' AND customer = 'c' || id
             AND ts > now() - interval '1 hour' AND p BETWEEN 0 AND 2")" 9900 \
	"nested paths, key, partition, offset and timestamp columns are filled"

# --- hostile JSON: arrays on a mapped path, deep nesting; none may crash a worker
q $db "CREATE TABLE nested (uid integer, city text)"
q $db "SELECT pipeline.create_kafka_source('nested', '$BROKER_BOOTSTRAP', 'nest', 'nested', 'json',
        '{\"columns\": {\"uid\": \"user.id\", \"city\": \"user.address.city\"}, \"max_batch_latency_ms\": 50}')" >/dev/null
deep=$(printf '%.0s[' $(seq 5000))
printf '%s\n' '[{"user": 1}]' '{"x": {"y": 1}, "a": [{"user": {"id": 5}}]}' "$deep" \
	'{"user": {"id": 7, "address": {"city": "Oslo"}}}' | kcat -b "$BROKER_BOOTSTRAP" -P -t nest
wait_for_sql 30 $db "SELECT count(*) >= 2 FROM nested"
is "$(q $db "SELECT string_agg(coalesce(uid::text, '-') || '/' || coalesce(city, '-'), ' ' ORDER BY uid NULLS FIRST) FROM nested")" \
	"-/- 7/Oslo" "paths never match inside arrays, nested paths still do"
is "$(q $db "SELECT string_agg(error, ' / ' ORDER BY \"offset\") FROM pipeline.kafka_dead_letters WHERE source_name = 'nested'")" \
	"JSON message is not an object / JSON message nests deeper than 1000 levels" \
	"a top-level array and a message nested 5000 levels deep are dead letters, not crashes"

# --- CSV by position, with a bad row
q $db "CREATE TABLE sales (store integer, amount numeric, note text, sold_at timestamptz)"
q $db "SELECT pipeline.create_kafka_source('sales', '$BROKER_BOOTSTRAP', 'cs', 'sales', 'csv',
        '{\"columns\": [\"store\", \"amount\", \"note\"], \"timestamp_column\": \"sold_at\", \"max_batch_latency_ms\": 50}')" >/dev/null
printf '%s\036' '1,10.5,plain' '2,20,"quoted, with comma"' '3,oops,bad amount' '4,40,"say ""hi"""' '5,50,' \
	'\.' '6,60,"unterminated' '7,70,"two lines
8,80,ok"' '9,90,last' | kcat -b "$BROKER_BOOTSTRAP" -P -t cs -p 0 -D '\x1e'
wait_for_sql 30 $db "SELECT count(*) >= 6 FROM sales"
is "$(q $db "SELECT string_agg(store || '|' || amount || '|' || coalesce(note, 'NULL'), ';' ORDER BY store) FROM sales")" \
	'1|10.5|plain;2|20|quoted, with comma;4|40|say "hi";5|50|NULL;7|70|two lines
8,80,ok;9|90|last' "CSV records land field by field: quotes, empty fields and quoted line breaks"
q $db "CREATE TABLE sales_by_name (amount numeric, \"Store\" integer, note text)"
q $db "SELECT pipeline.create_kafka_source('sales_by_name', '$BROKER_BOOTSTRAP', 'cs', 'sales_by_name', 'csv',
        '{\"header\": \"STORE,Amount,note\", \"max_batch_latency_ms\": 50}')" >/dev/null
wait_for_sql 30 $db "SELECT count(*) >= 6 FROM sales_by_name"
is "$(q $db "SELECT string_agg(\"Store\" || '|' || amount, ';' ORDER BY \"Store\") FROM sales_by_name")" \
	'1|10.5;2|20;4|40;5|50;7|70;9|90' "CSV by header line: fields land in the columns of their names"
is "$(q $db "SELECT string_agg(error, ' / ' ORDER BY \"offset\") FROM pipeline.kafka_dead_letters WHERE source_name = 'sales'")" \
	'invalid input syntax for type numeric: "oops" (COPY sales, line 1, column amount: "oops") / CSV message is the end-of-data marker \. / CSV message ends inside a quoted field' \
	"a bad value, the end-of-data marker and an open quote are dead letters, and stop nothing"

# --- whole messages: jsonb validates, text takes anything in the database encoding
q $db "CREATE TABLE raw_events (body jsonb, h jsonb)"
q $db "SELECT pipeline.create_kafka_source('raw', '$BROKER_BOOTSTRAP', 'raw', 'raw_events', 'jsonb',
        '{\"headers_column\": \"h\", \"max_batch_latency_ms\": 50}')" >/dev/null
printf '%s\n' '{"a": 1}' '[1, 2]' '{"a": ' '"just a string"' | kcat -b "$BROKER_BOOTSTRAP" -P -t raw
printf '%s\n' '{"with": "headers"}' | kcat -b "$BROKER_BOOTSTRAP" -P -t raw \
	-H trace=abc-1 -H 'quote="x"	y' -H empty= -H "bin=$(printf 'a\377')" -H trace=abc-2
wait_for_sql 30 $db "SELECT count(*) >= 4 FROM raw_events"
is "$(q $db "SELECT string_agg(body::text, ' ' ORDER BY body::text) FROM raw_events")" '"just a string" [1, 2] {"a": 1} {"with": "headers"}' \
	"jsonb keeps every valid JSON message whole"
is "$(q $db "SELECT count(*) FILTER (WHERE h IS NULL) || ' ' || max(h::text) FROM raw_events")" \
	'3 {"bin": "\\x61ff", "empty": "", "quote": "\"x\"\ty", "trace": "abc-2"}' \
	"headers land as a JSON object (text, or \\x and hex when not text; the last of a repeated name), NULL when none"
q $db "CREATE TABLE lines (line text)"
q $db "SELECT pipeline.create_kafka_source('txt', '$BROKER_BOOTSTRAP', 'txt', 'lines', 'text', '{\"max_batch_latency_ms\": 50}')" >/dev/null
printf '%s\n' 'GET /index.html 200' 'tab	and \backslash' | kcat -b "$BROKER_BOOTSTRAP" -P -t txt
wait_for_sql 30 $db "SELECT count(*) >= 2 FROM lines"
is "$(q $db "SELECT count(*) FROM lines WHERE line IN ('GET /index.html 200', E'tab\tand \\\\backslash')")" 2 \
	"text keeps lines byte for byte, tabs and backslashes included"

# --- fast paths (flat JSON scan, ISO timestamp and plain decimal input) give
# exactly what PostgreSQL's own parsers give: compare with a jsonb copy of
# the same messages cast in SQL
q $db "CREATE TABLE flat_typed (o bigint, i integer, s text, n numeric, n2 numeric(8,2), b boolean, tz timestamptz, ts timestamp)"
q $db "CREATE TABLE flat_raw (body jsonb, o bigint)"
q $db "SELECT pipeline.create_kafka_source('flat_typed', '$BROKER_BOOTSTRAP', 'flat', 'flat_typed', 'json',
        '{\"offset_column\": \"o\", \"max_batch_latency_ms\": 50}')" >/dev/null
q $db "SELECT pipeline.create_kafka_source('flat_raw', '$BROKER_BOOTSTRAP', 'flat', 'flat_raw', 'jsonb',
        '{\"offset_column\": \"o\", \"max_batch_latency_ms\": 50}')" >/dev/null
printf '%s\n' \
	'{"i": 1, "s": "plain", "n": 1, "n2": 1, "b": true, "tz": "2026-11-24T10:00:00Z", "ts": "2026-11-24T10:00:00"}' \
	'{ "i" : -2 , "s" : "h\u00e9llo \"q\" \\ \t" , "n" : -0.00 , "n2" : -12.345 , "b" : false , "tz" : "2026-11-24 10:00:00+02" , "ts" : "2026-11-24 10:00:00.25" }' \
	'{"i": 3, "s": "héllo wörld", "n": 123.4500, "n2": "99.999", "b": null, "tz": "2026-11-24T10:00:00.5+05:30", "ts": "2026-11-24T10:00:00+02"}' \
	'{"i": 4, "n": 0.000001, "n2": 0, "tz": "2026-11-24T10:00:00.123456-0330", "ts": "2024-02-29T23:59:59.999999"}' \
	'{"i": 5, "n": 999999999999999999, "tz": "2024-02-29T23:59:59.999999Z", "ts": "2026-11-24T24:00:00"}' \
	'{"i": 6, "n": 1234567890123456789012.5, "tz": "2026-11-24T10:00:00.1234567Z", "ts": "2026-11-24T10:00:00.1234567"}' \
	'{"i": 7, "n": 1e3, "n2": "-1.5E1", "tz": "2026-11-24T24:00:00Z", "ts": "0099-01-01 00:00:00"}' \
	'{"i": 8, "i": 9, "s": "last key wins", "n": "NaN", "n2": " 7 ", "tz": "Nov 24 2026 10:00:00 UTC", "ts": "2026-11-24T10:00:00Z"}' \
	'{"i": 10, "x": {"nested": [1, "\u0041"]}, "s": "", "tz": "1999-12-31T23:59:60Z"}' \
	'{}' \
	'{"i": 11, "tz": "2026-02-29T10:00:00Z"}' \
	'{"i": 12, "n2": 1234567.891}' \
	'{"i": 13, "n": 1.}' | kcat -b "$BROKER_BOOTSTRAP" -P -t flat
wait_for_sql 30 $db "SELECT (SELECT count(*) FROM flat_raw) = 12 AND
                     (SELECT count(*) FROM flat_typed) + (SELECT count(*) FROM pipeline.kafka_dead_letters WHERE source_name = 'flat_typed') = 13"
is "$(q $db "SELECT count(*) FROM flat_typed t JOIN flat_raw r USING (o)
             WHERE t.i IS NOT DISTINCT FROM (r.body->>'i')::int AND t.s IS NOT DISTINCT FROM r.body->>'s'
               AND t.n::text IS NOT DISTINCT FROM (r.body->>'n')::numeric::text
               AND t.n2::text IS NOT DISTINCT FROM (r.body->>'n2')::numeric(8,2)::text
               AND t.b IS NOT DISTINCT FROM (r.body->>'b')::boolean
               AND t.tz IS NOT DISTINCT FROM (r.body->>'tz')::timestamptz
               AND t.ts IS NOT DISTINCT FROM (r.body->>'ts')::timestamp")" 10 \
	"10 messages of every shape land exactly as PostgreSQL's own JSON, timestamp and numeric parsers read them"
is "$(q $db "SELECT string_agg(error, ' / ' ORDER BY \"offset\") FROM pipeline.kafka_dead_letters WHERE source_name = 'flat_typed'")" \
	'date/time field value out of range: "2026-02-29T10:00:00Z" (COPY flat_typed, line 1, column tz: "2026-02-29T10:00:00Z") / numeric field overflow (COPY flat_typed, line 1, column n2: "1234567.891") / invalid JSON: Token "1." is invalid.' \
	"values the fast paths cannot take get PostgreSQL's own error"
is "$(q $db "SELECT string_agg(coalesce(i::text, '-'), ',' ORDER BY o) FROM flat_typed")" "1,-2,3,4,5,6,7,9,10,-" \
	"the last of duplicate keys wins, and an empty object is a row of NULLs"

# each source takes a background worker slot: free them
for source in orders nested sales sales_by_name raw txt flat_typed flat_raw; do
	q $db "SELECT pipeline.drop_kafka_source('$source')" >/dev/null
done

# --- on_error = stop pauses the source at the first bad message
q $db "CREATE TABLE strict_orders (id integer)"
q $db "SELECT pipeline.create_kafka_source('strict', '$BROKER_BOOTSTRAP', 'js', 'strict_orders', 'json',
        '{\"on_error\": \"stop\", \"batch_size\": 100000, \"max_batch_latency_ms\": 200}')" >/dev/null
wait_for_sql 30 $db "SELECT NOT enabled FROM pipeline.kafka_sources WHERE name = 'strict'"
ok $? "on_error = stop pauses the source at the first bad message"
q $db "SELECT last_error FROM pipeline.kafka_status WHERE source = 'strict' LIMIT 1" | grep -q 'stopped at partition [0-9]* offset [0-9]*'
ok $? "and says where it stopped and why"
is "$(q $db "SELECT count(*) FROM strict_orders")" 0 "its batch was not half stored"

broker_stop
q "DROP DATABASE $db WITH (FORCE)" >/dev/null
done_testing
