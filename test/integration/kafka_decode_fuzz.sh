# Differential fuzzing of the decoding fast paths (the flat JSON scanner, ISO
# timestamp and plain decimal input) against PostgreSQL's own parsers: random
# messages near the edges of each grammar go to a typed source and to a jsonb
# source of the same topic; every message the SQL casts of its jsonb fields
# accept must land with exactly those values, every other one must be a dead
# letter.  FUZZ_SEED and FUZZ_N repeat or widen a run.
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/tap.sh
. test/lib/pg.sh
. test/lib/broker.sh

plan 4
db=kafka_decode_fuzz
seed=${FUZZ_SEED:-$RANDOM}
n=${FUZZ_N:-3000}
diag "seed $seed, $n messages (FUZZ_SEED=$seed FUZZ_N=$n repeats this run)"

fresh_database $db
broker_start -n 1 fuzz:1
q $db "CREATE TABLE typed (o bigint, i integer, tz timestamptz, ts timestamp, n numeric, n2 numeric(12,3), s text)"
q $db "CREATE TABLE raw (body jsonb, o bigint)"
q $db "SELECT pipeline.create_kafka_source('typed', '$BROKER_BOOTSTRAP', 'fuzz', 'typed', 'json',
        '{\"offset_column\": \"o\", \"max_batch_latency_ms\": 50}')" >/dev/null
q $db "SELECT pipeline.create_kafka_source('raw', '$BROKER_BOOTSTRAP', 'fuzz', 'raw', 'jsonb',
        '{\"offset_column\": \"o\", \"max_batch_latency_ms\": 50}')" >/dev/null

awk -v seed="$seed" -v n="$n" '
function pick(list,   a, k) { k = split(list, a, "|"); return a[int(rand() * k) + 1] }
function digits(k,   d, j) { d = ""; for (j = 0; j < k; j++) d = d int(rand() * 10); return d }
function two(lo, hi) { return sprintf("%02d", lo + int(rand() * (hi - lo + 1))) }
function stamp(   t) {
	# mostly valid fields, sometimes just past their ends
	t = pick("2026|2024|2023|0001|9999|1999|2000|0099|0000|20260|26") "-"
	t = t (rand() < 0.85 ? two(1, 12) : rand() < 0.7 ? two(0, 13) : int(rand() * 10)) "-"
	t = t (rand() < 0.85 ? two(1, 28) : two(0, 32)) pick("T|T|T|T| | |t|x")
	t = t (rand() < 0.9 ? two(0, 23) : two(23, 25)) ":" (rand() < 0.9 ? two(0, 59) : two(58, 61)) ":"
	t = t (rand() < 0.9 ? two(0, 59) : two(58, 61))
	if (rand() < 0.5) t = t "." digits(int(rand() * 9))
	return t pick("Z|Z|Z||+02|+05:30|-0330|+14:59|+15:00|-12|+1|z| UTC|+02:3|+0530|Zx")
}
function number(   v) {
	v = pick("||||-|+") digits(int(rand() * 22))
	if (rand() < 0.5) v = v "." digits(int(rand() * 8))
	if (rand() < 0.1) v = v pick("e3|E-2|e|e+5")
	if (rand() < 0.05) v = pick("NaN| 7 |Infinity|-0|0.0|00.5|.5|5.")
	return v
}
function jsonnumber(v) { return v ~ /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?$/ }
function str(   s, j) {
	s = ""
	for (j = int(rand() * 12); j > 0; j--)
		s = s pick("a|b|Z|é|ü|0| |,|:|{|}|[|]|\\\"|\\\\|\\t|\\n|\\u00e9|\\u0041|/|\\/|-|\\u0001|\\ud83d\\ude00")
	return s
}
function ws() { return pick("||| |  |\t") }
function field(k, v) { return ws() "\"" k "\"" ws() ":" ws() v ws() }
BEGIN {
	srand(seed)
	for (m = 1; m <= n; m++) {
		t = stamp(); num = number(); num2 = number()
		f[1] = field("i", rand() < 0.9 ? m : pick("\"x\"|1.5|null|true|99999999999"))
		f[2] = field("tz", "\"" t "\"")
		f[3] = field("ts", "\"" t "\"")
		f[4] = field("n", jsonnumber(num) && rand() < 0.7 ? num : "\"" num "\"")
		f[5] = field("n2", jsonnumber(num2) && rand() < 0.7 ? num2 : "\"" num2 "\"")
		f[6] = field("s", rand() < 0.9 ? "\"" str() "\"" : pick("null|1|true"))
		k = 6
		if (rand() < 0.1) f[++k] = field("i", m)                      # a duplicate key, last wins
		if (rand() < 0.1) f[++k] = field("x", "{\"i\": [1, {\"s\": 2}]}") # nesting for the slow path
		line = "{"
		for (j = 1; j <= k; j++) { sw = int(rand() * k) + 1; tmp = f[j]; f[j] = f[sw]; f[sw] = tmp }
		for (j = 1; j <= k; j++) line = line (j > 1 ? "," : "") f[j]
		line = line "}"
		if (rand() < 0.03) line = substr(line, 1, length(line) - 1 - int(rand() * 3))  # truncated
		print line
	}
}' | kcat -b "$BROKER_BOOTSTRAP" -P -t fuzz

wait_for_sql 120 $db "SELECT (SELECT count(*) FROM typed) + (SELECT count(*) FROM pipeline.kafka_dead_letters WHERE source_name = 'typed') = $n
                      AND (SELECT coalesce(sum(next_offset), 0) FROM pipeline.kafka_offsets o JOIN pipeline.kafka_sources s ON s.id = o.source_id WHERE s.name = 'raw') = $n"
is "$(q $db "SELECT (SELECT count(*) FROM typed) + (SELECT count(*) FROM pipeline.kafka_dead_letters WHERE source_name = 'typed')")" "$n" \
	"every message is a row or a dead letter"
diag "$(q $db "SELECT (SELECT count(*) FROM typed) || ' rows, ' || (SELECT count(*) FROM typed WHERE tz IS NOT NULL AND n IS NOT NULL) ||
               ' with a time and a number, ' || (SELECT count(*) FROM pipeline.kafka_dead_letters WHERE source_name = 'typed') || ' dead letters'")"

# what PostgreSQL's own parsers make of a message's fields, and whether they accept them all
q $db "CREATE FUNCTION expected(body jsonb) RETURNS typed LANGUAGE sql AS \$\$
       SELECT NULL::bigint, (body->>'i')::integer, (body->>'tz')::timestamptz, (body->>'ts')::timestamp,
              (body->>'n')::numeric, (body->>'n2')::numeric(12,3), body->>'s' \$\$"
q $db "CREATE FUNCTION accepted(body jsonb) RETURNS boolean LANGUAGE plpgsql AS \$\$
       BEGIN
           PERFORM expected(body);
           RETURN true;
       EXCEPTION WHEN data_exception THEN
           RETURN false;
       END \$\$"
is "$(q $db "SELECT count(*) FROM raw r CROSS JOIN LATERAL (SELECT (expected(r.body)).*) e
             WHERE accepted(r.body) AND NOT EXISTS (
                 SELECT FROM typed t WHERE t.o = r.o AND t.i IS NOT DISTINCT FROM e.i AND t.tz IS NOT DISTINCT FROM e.tz
                    AND t.ts IS NOT DISTINCT FROM e.ts AND t.n::text IS NOT DISTINCT FROM e.n::text
                    AND t.n2::text IS NOT DISTINCT FROM e.n2::text AND t.s IS NOT DISTINCT FROM e.s)")" 0 \
	"every message PostgreSQL's parsers accept landed with exactly their values"
is "$(q $db "SELECT count(*) FROM raw r WHERE NOT accepted(r.body)
             AND NOT EXISTS (SELECT FROM pipeline.kafka_dead_letters d WHERE d.source_name = 'typed' AND d.\"offset\" = r.o)")" 0 \
	"every message they refuse is a dead letter"
is "$(q $db "SELECT count(*) FROM typed t WHERE NOT EXISTS (SELECT FROM raw r WHERE r.o = t.o)")" 0 \
	"no row landed from a message that is not valid JSON"

broker_stop
q "DROP DATABASE $db WITH (FORCE)" >/dev/null
done_testing
