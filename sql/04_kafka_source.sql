-- Kafka sources: definition, validation, operations and ownership.
-- (Streaming itself is tested against the test broker in test/integration.)
\set SHOW_CONTEXT never
CREATE TABLE events (
    id integer, name text, amount numeric, tags text[], body jsonb,
    k text, p integer, o bigint, ts timestamptz, raw_key bytea);
CREATE VIEW events_view AS SELECT * FROM events;

-- a JSON source with a path mapping and all four metadata columns
SELECT pipeline.create_kafka_source('ev', '127.0.0.1:9', 'events', 'events', 'json',
    '{"columns": {"id": "id", "name": "user.name", "amount": "amount", "body": "body"},
      "key_column": "k", "partition_column": "p", "offset_column": "o",
      "timestamp_column": "ts", "batch_size": 5000, "max_batch_latency_ms": 100}') AS id;
SELECT name, owner, brokers, topic, target, format, columns, paths, key_column,
       partition_column, offset_column, timestamp_column, start_position, batch_size,
       max_batch_latency_ms, parallelism, on_error, enabled
  FROM pipeline.kafka_sources;

-- the default mapping names every column, so one unfit for JSON fields is refused
SELECT pipeline.create_kafka_source('x', '127.0.0.1:9', 'events', 'events');

-- by default every other column is filled from the same-named top-level key
CREATE TABLE flat (id integer, name text, k bytea);
SELECT pipeline.create_kafka_source('flat', 'broker-1.example:9092,broker-2.example:9092', 'flat',
    'flat', 'json', '{"key_column": "k", "start": "latest", "parallelism": 2,
                      "kafka_properties": {"security.protocol": "plaintext", "fetch.max.bytes": 1048576}}') > 0 AS created;
SELECT columns, paths, key_column, start_position, parallelism FROM pipeline.kafka_sources WHERE name = 'flat';
SELECT name, value FROM pipeline.kafka_source_properties ORDER BY name;

-- whole messages into one column, with the message headers as a JSON object
CREATE TABLE raw (body jsonb, received_at timestamptz, hdrs jsonb);
SELECT pipeline.create_kafka_source('raw', '127.0.0.1:9', 'raw', 'raw', 'jsonb',
    '{"timestamp_column": "received_at", "headers_column": "hdrs", "start": "2026-01-31 12:00+00"}') > 0 AS created;
SELECT columns, timestamp_column, headers_column, start_position FROM pipeline.kafka_sources WHERE name = 'raw';

-- CSV by position
CREATE TABLE sales (store integer, amount numeric, sold_at timestamptz);
SELECT pipeline.create_kafka_source('sales', '127.0.0.1:9', 'sales', 'sales', 'csv',
    '{"columns": ["store", "amount", "sold_at"]}') > 0 AS created;
-- CSV by header line: each field fills the column of its name, exact or case-insensitive
SELECT pipeline.create_kafka_source('sales_by_header', '127.0.0.1:9', 'sales', 'sales', 'csv',
    '{"header": "Sold_At, \"AMOUNT\" ,store"}') > 0 AS created;
SELECT columns FROM pipeline.kafka_sources WHERE name = 'sales_by_header';
SELECT pipeline.create_kafka_source('x', '127.0.0.1:9', 'sales', 'sales', 'csv', '{"header": "store,price"}');
SELECT pipeline.create_kafka_source('x', '127.0.0.1:9', 'sales', 'sales', 'csv', '{"header": ["store"]}');
SELECT pipeline.create_kafka_source('x', '127.0.0.1:9', 'sales', 'sales', 'csv', '{"header": "store", "columns": ["store"]}');
SELECT pipeline.create_kafka_source('x', '127.0.0.1:9', 'events', 'events', 'json', '{"header": "id"}');

-- a target table created from a column list, in the same call
SELECT pipeline.create_kafka_source('clicks', '127.0.0.1:9', 'clicks',
    pipeline.create_target_table('clicks', 'user_id bigint NOT NULL, url text, seen_at timestamptz'),
    'json', '{"timestamp_column": "seen_at"}') > 0 AS created;
SELECT target, columns, timestamp_column FROM pipeline.kafka_sources WHERE name = 'clicks';
SELECT attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute
 WHERE attrelid = 'clicks'::regclass AND attnum > 0 ORDER BY attnum;
SELECT pipeline.create_target_table('"Click Log"', 'id integer') AS created;
SELECT pipeline.create_target_table('clicks', 'id integer');
SELECT pipeline.create_target_table('a.b.c', 'id integer');
SELECT pipeline.create_target_table('', 'id integer');
SELECT pipeline.create_target_table('other', 'id integer); DROP TABLE events; CREATE TABLE z (b int');
SELECT pipeline.create_target_table('other', 'id no_such_type');

-- bad arguments
SELECT pipeline.create_kafka_source('', '127.0.0.1:9', 'events', 'events');
SELECT pipeline.create_kafka_source('x', 'localhost', 'events', 'events');
SELECT pipeline.create_kafka_source('x', 'kafka:9092;rm -rf', 'events', 'events');
SELECT pipeline.create_kafka_source('x', '127.0.0.1:9', 'bad topic', 'events');
SELECT pipeline.create_kafka_source('x', '127.0.0.1:9', 'events', 'events', 'avro');
SELECT pipeline.create_kafka_source('x', '127.0.0.1:9', 'events', 'events', 'json', '[1]');
SELECT pipeline.create_kafka_source('x', '127.0.0.1:9', 'events', 'events', 'json', '{"batchsize": 10}');
SELECT pipeline.create_kafka_source('x', '127.0.0.1:9', 'events', 'events', 'json', '{"columns": {"id": "id"}, "batch_size": 0}');
SELECT pipeline.create_kafka_source('x', '127.0.0.1:9', 'events', 'events', 'json', '{"columns": {"id": "id"}, "batch_size": "many"}');
SELECT pipeline.create_kafka_source('x', '127.0.0.1:9', 'events', 'events', 'json', '{"columns": {"id": "id"}, "parallelism": 100}');
SELECT pipeline.create_kafka_source('x', '127.0.0.1:9', 'events', 'events', 'json', '{"columns": {"id": "id"}, "on_error": "ignore"}');
SELECT pipeline.create_kafka_source('x', '127.0.0.1:9', 'events', 'events', 'json', '{"columns": {"id": "id"}, "start": "yesterday-ish"}');
SELECT pipeline.create_kafka_source('x', '127.0.0.1:9', 'events', 'events_view');
SELECT pipeline.create_kafka_source('x', '127.0.0.1:9', 'events', 'no_such_table');
-- unknown column
SELECT pipeline.create_kafka_source('x', '127.0.0.1:9', 'events', 'events', 'json', '{"columns": {"nope": "id"}}');
SELECT pipeline.create_kafka_source('x', '127.0.0.1:9', 'events', 'events', 'json', '{"key_column": "nope"}');
-- unsupported type mappings
SELECT pipeline.create_kafka_source('x', '127.0.0.1:9', 'events', 'events', 'json', '{"columns": {"tags": "tags"}}');
SELECT pipeline.create_kafka_source('x', '127.0.0.1:9', 'events', 'events', 'json', '{"columns": {"id": "id"}, "key_column": "p"}');
SELECT pipeline.create_kafka_source('x', '127.0.0.1:9', 'events', 'events', 'json', '{"columns": {"id": "id"}, "timestamp_column": "name"}');
SELECT pipeline.create_kafka_source('x', '127.0.0.1:9', 'events', 'events', 'json', '{"columns": {"id": "id"}, "headers_column": "name"}');
SELECT pipeline.create_kafka_source('x', '127.0.0.1:9', 'events', 'events', 'jsonb', '{"payload_column": "name"}');
SELECT pipeline.create_kafka_source('x', '127.0.0.1:9', 'events', 'events', 'text', '{"payload_column": "id"}');
SELECT pipeline.create_kafka_source('x', '127.0.0.1:9', 'events', 'events', 'text');
SELECT pipeline.create_kafka_source('x', '127.0.0.1:9', 'events', 'events', 'json', '{"columns": {"k": "id"}, "key_column": "k"}');
SELECT pipeline.create_kafka_source('x', '127.0.0.1:9', 'events', 'events', 'csv', '{"columns": {"id": "id"}}');
-- properties pg_pipeline manages itself, and malformed ones
SELECT pipeline.create_kafka_source('x', '127.0.0.1:9', 'events', 'events', 'json', '{"columns": {"id": "id"}, "kafka_properties": {"enable.auto.commit": "true"}}');
SELECT pipeline.create_kafka_source('x', '127.0.0.1:9', 'events', 'events', 'json', '{"columns": {"id": "id"}, "kafka_properties": {"sasl.username": ["a"]}}');
SELECT pipeline.create_kafka_source('x', '127.0.0.1:9', 'events', 'events', 'json', '{"columns": {"id": "id"}, "kafka_properties": "sasl"}');
-- one name per source
SELECT pipeline.create_kafka_source('ev', '127.0.0.1:9', 'events', 'events', 'json', '{"columns": {"id": "id"}}');

-- operations
SELECT pipeline.pause_kafka_source('ev');
SELECT name, enabled, paused_reason FROM pipeline.kafka_sources WHERE name = 'ev';
SELECT pipeline.resume_kafka_source('ev');
SELECT pipeline.alter_kafka_source('ev', '{"batch_size": 20000, "on_error": "skip"}');
SELECT name, enabled, paused_reason, batch_size, on_error FROM pipeline.kafka_sources WHERE name = 'ev';
SELECT pipeline.alter_kafka_source('ev', '{"max_error_rate": 0.01}');
SELECT max_error_rate FROM pipeline.kafka_sources WHERE name = 'ev';
SELECT pipeline.alter_kafka_source('ev', '{"max_error_rate": 5}');
SELECT pipeline.alter_kafka_source('ev', '{"max_error_rate": "1 %"}');
-- a source may keep no rows, only feeding the aggregates over its table
SELECT pipeline.create_kafka_source('folded', '127.0.0.1:9', 'events', 'flat', 'json', '{"store_rows": "no"}');
SELECT pipeline.create_kafka_source('folded', '127.0.0.1:9', 'events', 'flat', 'json', '{"store_rows": false}') > 0 AS created;
SELECT store_rows, batch_size FROM pipeline.kafka_sources WHERE name = 'folded';
SELECT pipeline.drop_kafka_source('folded');
SELECT pipeline.alter_kafka_source('ev', '{"partitions": [2, 0, 2]}');
SELECT partitions FROM pipeline.kafka_sources WHERE name = 'ev';
SELECT pipeline.alter_kafka_source('ev', '{"partitions": []}');
SELECT pipeline.alter_kafka_source('ev', '{"partitions": [-1]}');
SELECT pipeline.alter_kafka_source('ev', '{"format": "csv"}');
SELECT pipeline.reset_kafka_source('ev', '{"0": 42, "1": 7}');
SELECT partition, next_offset FROM pipeline.kafka_offsets o JOIN pipeline.kafka_sources s ON s.id = o.source_id
 WHERE s.name = 'ev' AND partition IN (0, 1) ORDER BY 1;
SELECT pipeline.reset_kafka_source('ev', 'latest');
SELECT count(*) AS offsets_left FROM pipeline.kafka_offsets o JOIN pipeline.kafka_sources s ON s.id = o.source_id
 WHERE s.name = 'ev';
SELECT start_position FROM pipeline.kafka_sources WHERE name = 'ev';
SELECT pipeline.reset_kafka_source('ev', '{"0": "soon"}');
SELECT pipeline.reset_kafka_source('ev', 'sometime');
SELECT pipeline.pause_kafka_source('nope');
SELECT pipeline.drop_kafka_source('nope');

-- ownership: a source belongs to its creator, others cannot see or touch it
CREATE ROLE regress_pipeline_alice LOGIN;
CREATE ROLE regress_pipeline_bob LOGIN;
CREATE ROLE regress_pipeline_nologin NOLOGIN;
GRANT INSERT ON events TO regress_pipeline_alice, regress_pipeline_nologin;
SET ROLE regress_pipeline_bob;
SELECT pipeline.create_kafka_source('bobs', '127.0.0.1:9', 'events', 'events', 'json', '{"columns": {"id": "id"}}');
SET ROLE regress_pipeline_nologin;
SELECT pipeline.create_kafka_source('nologin', '127.0.0.1:9', 'events', 'events', 'json', '{"columns": {"id": "id"}}');
SET ROLE regress_pipeline_alice;
SELECT pipeline.create_kafka_source('alices', '127.0.0.1:9', 'events', 'events', 'json',
    '{"columns": {"id": "id"}, "kafka_properties": {"sasl.password": "secret"}}') > 0 AS created;
SELECT name, owner FROM pipeline.kafka_sources ORDER BY name;
SELECT name, value FROM pipeline.kafka_source_properties;
SET ROLE regress_pipeline_bob;
SELECT name FROM pipeline.kafka_sources;
SELECT count(*) AS secrets_visible FROM pipeline.kafka_source_properties;
SELECT pipeline.drop_kafka_source('alices');
UPDATE pipeline.kafka_sources SET enabled = false;
INSERT INTO pipeline.kafka_sources (name, owner, brokers, topic, target, format, columns, paths)
VALUES ('forged', 'regress_pipeline_alice', '127.0.0.1:9', 'events', 'events', 'json', '{id}', '{id}');
RESET ROLE;
SELECT name, owner, enabled FROM pipeline.kafka_sources WHERE name = 'alices';

-- drop
SELECT pipeline.drop_kafka_source(name) FROM pipeline.kafka_sources ORDER BY name;
SELECT count(*) AS sources, (SELECT count(*) FROM pipeline.kafka_offsets) AS offsets,
       (SELECT count(*) FROM pipeline.kafka_source_properties) AS properties
  FROM pipeline.kafka_sources;
REVOKE ALL ON events FROM regress_pipeline_alice, regress_pipeline_nologin;
DROP ROLE regress_pipeline_alice, regress_pipeline_bob, regress_pipeline_nologin;
