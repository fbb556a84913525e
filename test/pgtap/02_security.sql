-- Security, as several roles: a role cannot see, change or drop another's
-- pipelines or their secrets, cannot make a worker act with rights it
-- lacks, cannot hijack the extension's functions through search_path or
-- operators, and odd names (quotes, dots, Unicode, reserved words) work.
\unset ECHO
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
\set ON_ERROR_STOP 1
SET client_min_messages = warning;

\ir include/wait_for.sql

CREATE EXTENSION pg_pipeline;
CREATE ROLE sec_alice LOGIN;
CREATE ROLE sec_bob LOGIN;
GRANT CREATE ON SCHEMA public TO sec_alice, sec_bob;
DO $$BEGIN EXECUTE format('GRANT CREATE ON DATABASE %I TO sec_bob', current_database()); END$$;

SELECT plan(32);

-- alice's pipelines, one of each kind, with a broker password among her source's properties
\o /dev/null
SET ROLE sec_alice;
CREATE TABLE alice_events (id bigint PRIMARY KEY, seen_at timestamptz NOT NULL, amount numeric);
CREATE TABLE alice_staging (LIKE alice_events);
SELECT pipeline.create_kafka_source('alice_src', 'localhost:1', 'alice-topic', 'alice_events', 'json',
    '{"kafka_properties": {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
                           "sasl.username": "alice", "sasl.password": "s3cret-alice"}}');
SELECT pipeline.create_table_source('alice_ts', 'alice_staging', 'alice_events', 'append', '{"watermark_column": "id"}');
SELECT pipeline.schedule_job('alice_job', '@daily', 'SELECT 1');
SELECT pipeline.create_aggregate('alice_minute', $$
    SELECT date_trunc('minute', seen_at) AS minute, count(*) AS events FROM alice_events GROUP BY minute$$);
SELECT pipeline.create_detector('alice_det', 'alice_minute', 'events', '{"time_column": "minute", "window": "1 minute"}');
SELECT pipeline.create_kafka_sink('alice_sink', 'alice_events', 'localhost:1', 'alice-out', '{"position_column": "id"}');
SELECT pipeline.create_report('alice_report', $$SELECT count(*) AS events FROM alice_events$$);
\o
SELECT is((SELECT count(*)::int FROM pipeline.kafka_source_properties WHERE value = 's3cret-alice'), 1,
          'alice sees her own source''s password');

-- bob sees none of it
SET ROLE sec_bob;
SELECT is((SELECT count(*)::int FROM pipeline.kafka_sources), 0, 'bob sees no Kafka source of alice''s');
SELECT is((SELECT count(*)::int FROM pipeline.kafka_source_properties), 0, 'nor its properties: the broker password stays hers');
SELECT is((SELECT count(*)::int FROM pipeline.kafka_status), 0, 'nor its status');
SELECT is((SELECT count(*)::int FROM pipeline.table_sources), 0, 'bob sees no table source of alice''s');
SELECT is((SELECT count(*)::int FROM pipeline.jobs), 0, 'nor her jobs');
SELECT is((SELECT count(*)::int FROM pipeline.aggregates), 0, 'nor her aggregates');
SELECT is((SELECT count(*)::int FROM pipeline.detectors), 0, 'nor her detectors');
SELECT is((SELECT count(*)::int FROM pipeline.kafka_sinks), 0, 'nor her Kafka sinks');
SELECT is((SELECT count(*)::int FROM pipeline.reports), 0, 'nor her reports');
SELECT throws_ok($$SELECT count(*) FROM alice_events$$, '42501', NULL, 'nor her tables');

-- ... and cannot change or drop it
SELECT throws_ok($$SELECT pipeline.drop_kafka_source('alice_src')$$, '42704', NULL, 'bob cannot drop her Kafka source');
SELECT throws_ok($$SELECT pipeline.drop_table_source('alice_ts')$$, '42704', NULL, 'nor her table source');
SELECT throws_ok($$SELECT pipeline.unschedule_job('alice_job')$$, '42704', NULL, 'nor her job');
SELECT throws_ok($$SELECT pipeline.run_job('alice_job')$$, '42704', NULL, 'nor run it');
SELECT throws_ok($$SELECT pipeline.drop_aggregate('alice_minute')$$, '42704', NULL, 'nor drop her aggregate');
SELECT throws_ok($$SELECT pipeline.drop_detector('alice_det')$$, '42704', NULL, 'nor her detector');
SELECT throws_ok($$SELECT pipeline.drop_kafka_sink('alice_sink')$$, '42704', NULL, 'nor her Kafka sink');
SELECT throws_ok($$SELECT pipeline.drop_report('alice_report')$$, '42704', NULL, 'nor her report');
-- the catalogs themselves: rows of others cannot be touched, nor made in another's name
UPDATE pipeline.kafka_sources SET topic = 'stolen', owner = 'sec_bob';
UPDATE pipeline.jobs SET command = 'DROP TABLE alice_events';
RESET ROLE;
SELECT is((SELECT topic FROM pipeline.kafka_sources WHERE name = 'alice_src') || ' ' ||
          (SELECT command FROM pipeline.jobs WHERE name = 'alice_job'), 'alice-topic SELECT 1',
          'bob''s UPDATEs of the catalogs do not reach alice''s rows');
SET ROLE sec_bob;
SELECT throws_ok($$INSERT INTO pipeline.jobs (name, owner, schedule, command)
                   VALUES ('as_alice', 'sec_alice', '@daily', 'DROP TABLE alice_events')$$,
                 '42501', NULL, 'bob cannot write a job in alice''s name');

-- a worker acts with its owner's rights, never more
SELECT throws_ok($$SELECT pipeline.create_kafka_source('bob_src', 'localhost:1', 't', 'alice_events', 'json')$$,
                 '42501', NULL, 'bob cannot point a Kafka source at a table he may not write');
SELECT throws_ok($$SELECT pipeline.create_table_source('bob_ts', 'alice_events', 'alice_staging', 'append', '{"watermark_column": "id"}')$$,
                 '42501', NULL, 'nor import from a table he may not read');
SELECT throws_ok($$SELECT pipeline.create_aggregate('bob_agg', 'SELECT seen_at, count(*) AS n FROM alice_events GROUP BY seen_at')$$,
                 '42501', NULL, 'nor aggregate one');
\o /dev/null
SELECT pipeline.schedule_job('bob_job', NULL, 'INSERT INTO alice_events VALUES (1, now(), 1)');
SELECT pipeline.run_job('bob_job');
\o
RESET ROLE;
SELECT ok(pg_temp.wait_for($$EXISTS (SELECT FROM pipeline.job_runs r JOIN pipeline.jobs j ON j.id = r.job_id
                                     WHERE j.name = 'bob_job' AND r.state = 'failed'
                                       AND r.error LIKE 'permission denied for table alice_events%')$$, '30 s')
          AND (SELECT count(*) FROM alice_events) = 0,
          'bob''s job runs as bob: inserting into alice''s table fails with permission denied, nothing written');

-- SECURITY DEFINER: none, so none can be abused (adding one means auditing it here)
SELECT is((SELECT count(*)::int FROM pg_proc WHERE pronamespace = 'pipeline'::regnamespace AND prosecdef), 0,
          'the extension has no SECURITY DEFINER function');

-- search_path and operator hijacking: bob's schema first on his path, with an
-- = for bigint and a count() that note every call; pipeline functions and
-- triggers never pick them up
SET ROLE sec_bob;
CREATE SCHEMA bob_traps;
CREATE TABLE bob_traps.calls (what text);
CREATE FUNCTION bob_traps.eq(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS
    $$BEGIN INSERT INTO bob_traps.calls VALUES ('='); RETURN $1 OPERATOR(pg_catalog.=) $2; END$$;
CREATE OPERATOR bob_traps.= (FUNCTION = bob_traps.eq, LEFTARG = bigint, RIGHTARG = bigint);
CREATE FUNCTION bob_traps.now() RETURNS timestamptz LANGUAGE plpgsql AS
    $$BEGIN INSERT INTO bob_traps.calls VALUES ('now'); RETURN pg_catalog.now(); END$$;
CREATE TABLE bob_events (id bigint, seen_at timestamptz, amount numeric);
CREATE TABLE bob_copy (LIKE bob_events);
SET search_path = bob_traps, public, pg_catalog;
\o /dev/null
SELECT pipeline.create_aggregate('bob_minute', $$
    SELECT date_trunc('minute', seen_at) AS minute, count(*) AS events, sum(amount) AS amount
      FROM public.bob_events GROUP BY minute$$, '{}', 'public, pg_catalog');
SELECT pipeline.create_detector('bob_det', 'public.bob_minute', 'events', '{"time_column": "minute", "window": "1 minute"}');
SELECT pipeline.create_table_source('bob_ts', 'public.bob_events', 'public.bob_copy', 'append', '{"watermark_column": "id"}',
                                    'public, pg_catalog');
INSERT INTO public.bob_events SELECT i, '2026-11-30 10:00+00'::timestamptz + i * interval '10 seconds', i
  FROM generate_series(1, 100) i;
CALL pipeline.run_table_source('bob_ts');
SELECT pipeline.schedule_job('bob_hourly', '@hourly', 'SELECT 1');
\o
RESET search_path;
SELECT is((SELECT count(*)::int FROM bob_traps.calls), 0,
          'with a hostile search_path, no pipeline function, trigger or procedure calls bob''s = or now()');
SELECT is((SELECT sum(events)::int || ' ' || sum(amount) FROM bob_minute) || ' ' || (SELECT count(*) FROM bob_copy),
          '100 5050 100', 'and they computed what they should');

-- names with quotes, dots, spaces, Unicode and reserved words
CREATE SCHEMA "my schema";
CREATE TABLE "my schema"."we""ird.name" ("select" timestamptz, "ünï côdé" bigint, "Order" text);
CREATE TABLE "my schema"."to ""copy""" (LIKE "my schema"."we""ird.name");
SELECT lives_ok($$SELECT pipeline.create_aggregate('odd.agg "x"', 'SELECT "Order", date_trunc(''minute'', "select") AS "from",
                      count(*) AS "ünï", sum("ünï côdé") AS "group" FROM "my schema"."we""ird.name" GROUP BY "Order", "from"')$$,
                'an aggregate over a table and columns with quotes, dots, spaces, Unicode and reserved names');
SELECT lives_ok($$SELECT pipeline.create_detector('odd.detector', '"my schema"."odd.agg ""x"""', 'ünï',
                      '{"time_column": "from", "window": "1 minute", "series": ["Order"]}')$$,
                'a detector over it');
SELECT lives_ok($$SELECT pipeline.create_table_source('odd''source', '"my schema"."we""ird.name"', '"my schema"."to ""copy"""',
                      'append', '{"watermark_column": "select"}')$$,
                'a table source between two such tables');
INSERT INTO "my schema"."we""ird.name" SELECT '2026-11-30 10:00+00'::timestamptz + i * interval '1 minute', i, 'ö''r"d'
  FROM generate_series(1, 30) i;
CALL pipeline.run_table_source('odd''source');
SELECT is((SELECT sum("ünï")::int || ' ' || sum("group") FROM "my schema"."odd.agg ""x""") || ' ' ||
          (SELECT count(*) FROM "my schema"."to ""copy""") || ' ' ||
          (SELECT count(*) FROM "my schema"."odd.detector_baselines"),
          '30 465 30 1', 'and they work: the aggregate, the import and the detector''s baselines');
RESET ROLE;

SELECT * FROM finish();
DROP EXTENSION pg_pipeline CASCADE;
DROP OWNED BY sec_alice, sec_bob CASCADE;
DROP ROLE sec_alice;
DROP ROLE sec_bob;
