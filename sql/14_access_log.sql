-- Web server access log lines (Common and Combined Log Format): the fields,
-- typed, and a clear reason for a line that is not one.
\set SHOW_CONTEXT never
SET timezone = 'UTC';
\x on
-- Combined Log Format (Apache's and nginx's default)
SELECT * FROM pipeline.parse_access_log(
    '203.0.113.7 - alice [10/Oct/2026:13:55:36 -0700] "GET /products/42?ref=mail HTTP/1.1" 200 2326 "https://example.com/" "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"');
-- Common Log Format; "-" is an absent field, and a "-" size is 0 bytes
SELECT * FROM pipeline.parse_access_log('198.51.100.2 - - [01/Jan/2026:00:00:00 +0000] "POST /login HTTP/2.0" 302 -');
-- what a site appends after the user agent (nginx's request time) is kept as extra;
-- escaped quotes and backslashes inside quotes; a request of another shape keeps only request
SELECT * FROM pipeline.parse_access_log(
    E'2001:db8::1 - - [29/Feb/2024:23:59:59 +0530] "\\x16\\x03\\x01 \\"probe\\"" 400 157 "-" "bot \\"x\\\\y\\"" 0.002 upstream=1\n');
\x off
-- lines that are not access log lines: what is wrong, and a hint
SELECT pipeline.parse_access_log('');
SELECT pipeline.parse_access_log('10.0.0.1');
SELECT pipeline.parse_access_log('10.0.0.1 - - 10/Oct/2026:13:55:36 "GET / HTTP/1.1" 200 1');
SELECT pipeline.parse_access_log('10.0.0.1 - - [10/Foo/2026:13:55:36 -0700] "GET / HTTP/1.1" 200 1');
SELECT pipeline.parse_access_log('10.0.0.1 - - [10/Oct/2026:13:55:36 -0700] GET / HTTP/1.1 200 1');
SELECT pipeline.parse_access_log('10.0.0.1 - - [10/Oct/2026:13:55:36 -0700] "GET / HTTP/1.1 200 1');
SELECT pipeline.parse_access_log('10.0.0.1 - - [10/Oct/2026:13:55:36 -0700] "GET / HTTP/1.1" 2000 1');
SELECT pipeline.parse_access_log('10.0.0.1 - - [10/Oct/2026:13:55:36 -0700] "GET / HTTP/1.1" 200 12k');
SELECT pipeline.parse_access_log('10.0.0.1 - - [10/Oct/2026:13:55:36 -0700] "GET / HTTP/1.1" 200 1 "https://a/');
SELECT pipeline.parse_access_log('10.0.0.1 - - [10/Oct/2026:13:55:36 -0700] "GET / HTTP/1.1" 200 1 "https://a/"');
-- the layout is the parser's; the values are checked by their types' input functions
SELECT pipeline.parse_access_log('10.0.0.1 - - [32/Oct/2026:13:55:36 -0700] "GET / HTTP/1.1" 200 1');
SELECT pipeline.parse_access_log('10.0.0.1 - - [10/Oct/2026:13:55:36 -0700] "GET / HTTP/1.1" 200 99999999999999999999');
SELECT pipeline.parse_access_log(NULL) IS NULL AS null_line;
-- a Kafka source of format access_log: refusals
CREATE TABLE log_hits (ip text, seen timestamp, status integer);
SELECT pipeline.create_kafka_source('logs', 'localhost:9092', 'logs', 'log_hits', 'access_log', '{"columns": {"ip": "client", "status": "code"}}');
SELECT pipeline.create_kafka_source('logs', 'localhost:9092', 'logs', 'log_hits', 'access_log', '{"columns": {"ip": "client", "seen": "time"}}');
SELECT pipeline.create_kafka_source('logs', 'localhost:9092', 'logs', 'log_hits', 'access_log', '{"columns": {"ip": null}}');
SELECT pipeline.create_kafka_source('logs', 'localhost:9092', 'logs', 'log_hits', 'json', '{"columns": {"ip": null}}');
SELECT pipeline.create_kafka_source('logs', 'localhost:9092', 'logs', 'log_hits', 'csv', '{"columns": ["ip", null]}');
DROP TABLE log_hits;
