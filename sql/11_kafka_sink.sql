-- Kafka sinks: definitions, refusals, status, and a run against brokers that
-- cannot be reached.  (Producing to a broker: test/integration/kafka_sink.sh.)
\set SHOW_CONTEXT never
CREATE TABLE outbox (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, customer bigint, body text);
CREATE TABLE no_key (id bigint UNIQUE, body text);
CREATE TABLE no_index (id bigint, body text);
INSERT INTO outbox (customer, body) VALUES (1, 'first'), (2, 'second');

SELECT pipeline.create_kafka_sink('out', 'outbox', '127.0.0.1:9', 'events', '{"key_column": "customer"}') > 0 AS created;
SELECT pipeline.create_kafka_sink('new_only', 'outbox', '127.0.0.1:9', 'events', '{"start": "latest"}') > 0 AS created;
SELECT pipeline.create_kafka_sink('by_column', 'no_key', '127.0.0.1:9', 'events', '{"position_column": "id"}') > 0 AS created;
SELECT name, source, topic, position_column, key_column, produced_position, produced_rows, last_run_at
  FROM pipeline.kafka_sink_status ORDER BY name;

-- refusals
SELECT pipeline.create_kafka_sink('out', 'outbox', '127.0.0.1:9', 'events');
SELECT pipeline.create_kafka_sink('', 'outbox', '127.0.0.1:9', 'events');
SELECT pipeline.create_kafka_sink('x', 'outbox', '', 'events');
SELECT pipeline.create_kafka_sink('x', 'no_key', '127.0.0.1:9', 'events');
SELECT pipeline.create_kafka_sink('x', 'outbox', '127.0.0.1:9', 'events', '{"position_column": "body"}');
SELECT pipeline.create_kafka_sink('x', 'no_index', '127.0.0.1:9', 'events', '{"position_column": "id"}');
SELECT pipeline.create_kafka_sink('x', 'outbox', '127.0.0.1:9', 'events', '{"key_column": "nope"}');
SELECT pipeline.create_kafka_sink('x', 'outbox', '127.0.0.1:9', 'events', '{"start": "tomorrow"}');
SELECT pipeline.create_kafka_sink('x', 'outbox', '127.0.0.1:9', 'events', '{"batch_size": 0}');
SELECT pipeline.create_kafka_sink('x', 'outbox', '127.0.0.1:9', 'events', '{"kafka_properties": "acks=all"}');
SELECT pipeline.create_kafka_sink('x', 'outbox', '127.0.0.1:9', 'events', '{"topics": "a"}');

-- a run that cannot reach its brokers fails and records nothing; an invalid property is named
UPDATE pipeline.kafka_sinks SET kafka_properties = '{"message.timeout.ms": "300"}' WHERE name = 'out';
SELECT pipeline.run_kafka_sink('out');
UPDATE pipeline.kafka_sinks SET kafka_properties = '{"acks": "some"}' WHERE name = 'out';
SELECT pipeline.run_kafka_sink('out');
SELECT produced_position, produced_rows FROM pipeline.kafka_sink_status WHERE name = 'out';
UPDATE pipeline.kafka_sinks SET kafka_properties = '{"log.queue": "false"}' WHERE name = 'out';
SELECT pipeline.run_kafka_sink('out');
-- properties that load code, run commands or read the server's files are a superuser's
CREATE ROLE sink_user;
GRANT CREATE ON SCHEMA public TO sink_user;
SET ROLE sink_user;
CREATE TABLE user_outbox (id bigint PRIMARY KEY, body text);
INSERT INTO user_outbox VALUES (1, 'x');
SELECT pipeline.create_kafka_sink('user_out', 'user_outbox', '127.0.0.1:9', 'events',
                                  '{"kafka_properties": {"plugin.library.paths": "/tmp/evil.so"}}') > 0 AS created;
SELECT pipeline.run_kafka_sink('user_out');
UPDATE pipeline.kafka_sinks SET kafka_properties = '{"ssl.key.location": "/etc/ssl/private/server.key"}';
SELECT pipeline.run_kafka_sink('user_out');
-- another role's sink is not there for it
SELECT pipeline.run_kafka_sink('out');
SELECT pipeline.drop_kafka_sink('user_out');
DROP TABLE user_outbox;
RESET ROLE;
REVOKE CREATE ON SCHEMA public FROM sink_user;
DROP ROLE sink_user;
-- nothing new to produce: no connection is made
SELECT pipeline.run_kafka_sink('new_only');
SELECT pipeline.run_kafka_sink('nope');
SELECT pipeline.run_kafka_sink(NULL);

SELECT pipeline.drop_kafka_sink('out'), pipeline.drop_kafka_sink('new_only'), pipeline.drop_kafka_sink('by_column');
SELECT pipeline.drop_kafka_sink('out');
DROP TABLE outbox, no_key, no_index;
