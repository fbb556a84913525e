# Web server access log lines from Kafka (format access_log): Apache/nginx
# lines land typed, bad lines are dead letters with the reason, and the
# worker's decoding equals pipeline.parse_access_log.  Then the parser is
# fuzzed differentially: random mutations of valid lines go to it and to a
# reference written with PostgreSQL's regular expressions and casts; they
# must accept the same lines with the same fields and reject the rest.
# FUZZ_SEED and FUZZ_N repeat or widen a run.
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/tap.sh
. test/lib/pg.sh
. test/lib/broker.sh

plan 9
db=access_log
seed=${FUZZ_SEED:-$RANDOM}
n=${FUZZ_N:-20000}
diag "seed $seed, $n fuzzed lines (FUZZ_SEED=$seed FUZZ_N=$n repeats this run)"

fresh_database $db
broker_start -n 1 weblog:2

# --- from Kafka: 3000 lines of nginx/Apache shapes, 60 of them bad
q $db "CREATE TABLE hits (client inet, time timestamptz, method text, path text, status integer, bytes bigint,
        referer text, user_agent text, extra text, p integer, o bigint)"
q $db "CREATE TABLE raw_lines (line text, p integer, o bigint)"
q $db "SELECT pipeline.create_kafka_source('hits', '$BROKER_BOOTSTRAP', 'weblog', 'hits', 'access_log',
        '{\"partition_column\": \"p\", \"offset_column\": \"o\", \"max_batch_latency_ms\": 50}')" >/dev/null
q $db "SELECT pipeline.create_kafka_source('raw_lines', '$BROKER_BOOTSTRAP', 'weblog', 'raw_lines', 'text',
        '{\"payload_column\": \"line\", \"partition_column\": \"p\", \"offset_column\": \"o\", \"max_batch_latency_ms\": 50}')" >/dev/null
awk 'BEGIN {
	srand(7)
	split("GET GET GET POST HEAD PUT", methods, " ")
	split("/ /index.html /products/42 /search?q=a+b /api/v1/cart /img/logo.png", paths, " ")
	split("200 200 200 304 404 500 301", codes, " ")
	for (i = 1; i <= 3000; i++) {
		ip = sprintf("10.%d.%d.%d", i % 7, i % 13, i % 250 + 1)
		t = sprintf("[%02d/Nov/2026:%02d:%02d:%02d +0000]", 1 + i % 28, i % 24, i % 60, i % 60)
		req = methods[1 + i % 6] " " paths[1 + i % 6] " HTTP/1.1"
		code = codes[1 + i % 7]; size = (i % 5 == 0) ? "-" : i * 3
		if (i % 100 == 17)      line = ip " - - " t " \"" req "\" " code " 12k"                 # bad size
		else if (i % 100 == 53) line = ip " - - [" i "/Nov/2026] \"" req "\" " code " " size  # bad time
		else if (i % 3 == 0)    line = ip " - - " t " \"" req "\" " code " " size            # common
		else if (i % 3 == 1)    line = ip " - user" i " " t " \"" req "\" " code " " size " \"https://ref.example/" i "\" \"Mozilla/5.0 (\\\"quoted\\\")\""
		else                    line = ip " - - " t " \"" req "\" " code " " size " \"-\" \"curl/8.1\" rt=0." i % 1000
		print line
	}
}' | kcat -b "$BROKER_BOOTSTRAP" -P -t weblog
wait_for_sql 60 $db "SELECT (SELECT count(*) FROM hits) + (SELECT count(*) FROM pipeline.kafka_dead_letters) >= 3000
                     AND (SELECT count(*) FROM raw_lines) >= 3000"
is "$(q $db "SELECT count(*) || ' ' || count(DISTINCT (p, o)) FROM hits")" "2940 2940" "the 2940 good lines landed, once"
is "$(q $db "SELECT string_agg(n || ' ' || error, '; ' ORDER BY error) FROM (SELECT count(*) AS n, error
             FROM pipeline.kafka_dead_letters WHERE source_name = 'hits' GROUP BY error) d")" \
	"30 access log line has no response size (digits, or - for none) after the status; 30 access log line has no time like [10/Oct/2000:13:55:36 -0700] after the user field" \
	"the 60 bad lines are dead letters, each with what is wrong"
is "$(q $db "SELECT count(*) FROM hits h JOIN raw_lines r USING (p, o), LATERAL pipeline.parse_access_log(r.line) x
             WHERE (h.client, h.time, h.method, h.path, h.status, h.bytes, h.referer, h.user_agent, h.extra)
                   IS NOT DISTINCT FROM (x.client::inet, x.time, x.method, x.path, x.status, x.bytes, x.referer, x.user_agent, x.extra)")" \
	2940 "every landed row equals pipeline.parse_access_log of its line"
is "$(q $db "SELECT count(*) FILTER (WHERE user_agent = 'Mozilla/5.0 (\"quoted\")' AND referer LIKE 'https://ref.example/%')
             || ' ' || count(*) FILTER (WHERE extra LIKE 'rt=0.%' AND referer IS NULL)
             || ' ' || count(*) FILTER (WHERE bytes = 0) || ' ' || count(*) FILTER (WHERE user_agent IS NULL)
             FROM hits")" \
	"$(q $db "SELECT count(*) FILTER (WHERE i % 3 = 1) || ' ' || count(*) FILTER (WHERE i % 3 = 2)
             || ' ' || count(*) FILTER (WHERE i % 5 = 0) || ' ' || count(*) FILTER (WHERE i % 3 = 0)
             FROM generate_series(1, 3000) i WHERE i % 100 NOT IN (17, 53)")" \
	"combined lines keep referer and user agent (escaped quotes undone), extras are kept, a - size is 0"

# --- differential fuzzing against a regular-expression reference
psql -X -q -v ON_ERROR_STOP=1 -d $db -v seed="$seed" -v n="$n" <<'SQL'
-- the grammar of access_log.c, as one regular expression; the values cast
-- as their types would.  An array of the 13 fields, or NULL for a rejection.
CREATE FUNCTION reference_parse(line text) RETURNS text[] LANGUAGE plpgsql AS $f$
DECLARE
    m text[];
    r text[];
    quoted constant text := '"((?:[^"\\]|\\.)*)"';
BEGIN
    line := rtrim(line, E'\r\n');
    m := regexp_match(line, '^([^ ]+) +([^ ]+) +([^ ]+) +\[([0-9]{2})/(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)/([0-9]{4}):([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-][0-9]{4})\] +'
                            || quoted || ' +([0-9]{3}) +([0-9]+|-)(?: +(?:' || quoted || ' +' || quoted || '(?: +(.*))?|([^" ].*))?)?$');
    IF m IS NULL THEN
        RETURN NULL;
    END IF;
    r := ARRAY[m[1], m[2], m[3],
               (m[6] || '-' || lpad(array_position('{Jan,Feb,Mar,Apr,May,Jun,Jul,Aug,Sep,Oct,Nov,Dec}'::text[], m[5])::text, 2, '0')
                || '-' || m[4] || ' ' || m[7] || ':' || m[8] || ':' || m[9] || m[10])::timestamptz::text,
               m[11], NULL, NULL, NULL, m[12]::integer::text, CASE m[13] WHEN '-' THEN '0' ELSE m[13]::bigint::text END,
               m[14], m[15], COALESCE(ltrim(m[16]), m[17])];
    -- a request shaped METHOD target HTTP/x is split
    m := regexp_match(r[5], '^([A-Z]+) ([^ ]+) (HTTP/[^ ]*)$');
    IF m IS NOT NULL THEN
        r[6] := m[1]; r[7] := m[2]; r[8] := m[3];
    END IF;
    FOR i IN 1 .. 13 LOOP
        IF r[i] = '-' OR (r[i] = '' AND i = 13) THEN
            r[i] := NULL;
        ELSIF i IN (5, 7, 8, 11, 12) THEN
            r[i] := regexp_replace(r[i], '\\(["\\])', '\1', 'g');  -- quoted: \" and \\ undone
        END IF;
    END LOOP;
    RETURN r;
EXCEPTION WHEN data_exception THEN
    RETURN NULL;  -- a value its type refuses (a day 32, a size past bigint)
END
$f$;
CREATE FUNCTION ours(line text) RETURNS text[] LANGUAGE plpgsql AS $f$
DECLARE
    x record;
BEGIN
    x := pipeline.parse_access_log(line);
    RETURN ARRAY[x.client, x.ident, x.auth_user, x.time::text, x.request, x.method, x.path, x.protocol,
                 x.status::text, x.bytes::text, x.referer, x.user_agent, x.extra];
EXCEPTION WHEN data_exception THEN
    RETURN NULL;
END
$f$;
-- valid lines of many shapes, each with 0 to 3 characters replaced by one
-- of the grammar's delimiters or some other character
SELECT setseed((:seed % 1000) / 1000.0);
CREATE TABLE fuzz AS
WITH lines AS (
    SELECT i, (ARRAY['10.0.0.' || (i % 255), '2001:db8::' || i, '-', 'h\"' || i])[1 + i % 4]
           || ' ' || (ARRAY['-', 'id' || i])[1 + i % 2] || ' ' || (ARRAY['-', 'u', 'al"ice'])[1 + i % 3]
           || ' [' || lpad((1 + i % 31)::text, 2, '0') || '/' || (ARRAY['Jan', 'Feb', 'Oct', 'Dec'])[1 + i % 4] || '/2026:'
           || lpad((i % 24)::text, 2, '0') || ':' || lpad((i % 60)::text, 2, '0') || ':07 '
           || (ARRAY['+0000', '-0700', '+0530'])[1 + i % 3] || '] "'
           || (ARRAY['GET /a HTTP/1.1', 'POST /b?x=\"1\\\" HTTP/2.0', '-', 'garbage', 'GET  /two-spaces HTTP/1.1', 'GET / HTTP/'])[1 + i % 6]
           || '" ' || (ARRAY['200', '404', '503'])[1 + i % 3] || ' ' || (ARRAY['-', '0', '1234', '99999999999999999999'])[1 + i % 4]
           || (ARRAY['', ' "-" "-"', ' "https://r/" "UA \\ x"', ' "r" "ua" 0.1 up', ' extra fields', ' '])[1 + i % 6]
           || (ARRAY['', '', E'\n', E'\r\n'])[1 + i % 4] AS line,
           floor(random() * 4)::int AS edits
      FROM generate_series(1, :n) i
), edited AS (
    SELECT i, line, ARRAY(SELECT 1 + floor(random() * length(line))::int FROM generate_series(1, edits)) AS positions
      FROM lines
)
SELECT i, (SELECT string_agg(CASE WHEN j = ANY (positions)
                                  THEN (ARRAY['', ' ', '"', '\', '[', ']', '-', '/', ':', '0', 'x', E'\t', E'\n', 'é', ' "'])[1 + floor(random() * 15)::int]
                                  ELSE substr(line, j, 1) END, '' ORDER BY j)
             FROM generate_series(1, length(line)) j) AS line
  FROM edited;
SQL
is "$(q $db "SELECT count(*) FROM fuzz WHERE ours(line) IS DISTINCT FROM reference_parse(line)")" 0 \
	"the parser and the reference accept the same fuzzed lines with the same fields"
q $db "SELECT i, line, ours(line), reference_parse(line) FROM fuzz WHERE ours(line) IS DISTINCT FROM reference_parse(line) LIMIT 5" | while read -r l; do diag "$l"; done
counts=$(q $db "SELECT count(*) FILTER (WHERE ours(line) IS NOT NULL) || ' ' || count(*) FILTER (WHERE ours(line) IS NULL) FROM fuzz")
accepted=${counts% *} rejected=${counts#* }
diag "accepted $accepted, rejected $rejected"
[ "$accepted" -gt $((n / 5)) ]; ok $? "a fifth or more of the fuzzed lines are access log lines ($accepted)"
[ "$rejected" -gt $((n / 5)) ]; ok $? "a fifth or more are not ($rejected)"
like "$(q $db "SELECT count(*) FROM fuzz WHERE ours(line) IS NULL AND line ~ E'^[^ ]+ [^ ]+ [^ ]+ \\\\[.{26}\\\\] \"'")" '^[1-9][0-9]*$' \
	"rejections include lines that fail after the time, not only at the start"

# the worker survives every fuzzed line: through Kafka each lands or is a dead letter
q $db "TRUNCATE hits; DELETE FROM pipeline.kafka_dead_letters"
q $db "SELECT translate(line, E'\\n\\r', '  ') FROM fuzz ORDER BY i LIMIT 5000" |
	kcat -b "$BROKER_BOOTSTRAP" -P -t weblog
wait_for_sql 60 $db "SELECT (SELECT count(*) FROM hits) + (SELECT count(*) FROM pipeline.kafka_dead_letters WHERE source_name = 'hits') >= 5000"
is "$(q $db "SELECT (SELECT count(*) FROM hits) + (SELECT count(*) FROM pipeline.kafka_dead_letters WHERE source_name = 'hits')
             || ' ' || (SELECT count(*) FROM pg_stat_activity WHERE datname = '$db' AND backend_type = 'pg_pipeline kafka source')")" "5000 2" \
	"5000 fuzzed lines through Kafka: each landed or is a dead letter, and both workers still run"

broker_stop
q "DROP DATABASE $db WITH (FORCE)" >/dev/null
done_testing
