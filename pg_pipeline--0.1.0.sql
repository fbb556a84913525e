/* pg_pipeline--0.1.0.sql: installs schema "pipeline" */

\echo Use "CREATE EXTENSION pg_pipeline" to load this file. \quit

SET LOCAL search_path TO pg_catalog, pg_temp;

-- Fails if a schema of that name already exists, so nobody can plant objects in it.
CREATE SCHEMA pipeline;
COMMENT ON SCHEMA pipeline IS 'pg_pipeline: sources, aggregates, jobs and their status';
REVOKE ALL ON SCHEMA pipeline FROM PUBLIC;
GRANT USAGE ON SCHEMA pipeline TO PUBLIC;

CREATE FUNCTION pipeline.worker_processes(
    OUT pid pg_catalog.int4,
    OUT database_oid pg_catalog.oid,
    OUT kind pg_catalog.text,
    OUT state pg_catalog.text,
    OUT started_at pg_catalog.timestamptz,
    OUT object_id pg_catalog.int8,
    OUT object_index pg_catalog.int4,
    OUT messages pg_catalog.int8,
    OUT bytes pg_catalog.int8,
    OUT messages_per_second pg_catalog.float8,
    OUT bytes_per_second pg_catalog.float8)
RETURNS SETOF record
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pipeline_worker_processes';
COMMENT ON FUNCTION pipeline.worker_processes() IS
    'running pg_pipeline background workers of the whole cluster; query pipeline.workers instead';
REVOKE ALL ON FUNCTION pipeline.worker_processes() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.worker_processes() TO PUBLIC;

CREATE VIEW pipeline.workers AS
SELECT w.pid,
       d.datname AS database,
       w.kind,
       w.state,
       w.started_at
  FROM pipeline.worker_processes() AS w
  LEFT JOIN pg_catalog.pg_database AS d
         ON d.oid OPERATOR(pg_catalog.=) w.database_oid;
COMMENT ON VIEW pipeline.workers IS
    'running pg_pipeline background workers of the whole cluster: the launcher (no database) and one supervisor per database that has the extension';
REVOKE ALL ON pipeline.workers FROM PUBLIC;
GRANT SELECT ON pipeline.workers TO PUBLIC;

-------------------------------------------------------------------------------
-- Kafka sources
--
-- Rows belong to the role that created them (owner); row-level security lets
-- each role see and change only its own.  Workers run as the owner, so they
-- can write only where the owner may.
-------------------------------------------------------------------------------

CREATE FUNCTION pipeline.catalog_changed()
RETURNS trigger
LANGUAGE C
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pipeline_catalog_changed';
COMMENT ON FUNCTION pipeline.catalog_changed() IS
    'trigger: wakes this database''s supervisor when the transaction commits, so that it starts or stops workers';
REVOKE ALL ON FUNCTION pipeline.catalog_changed() FROM PUBLIC;

-- plain sequences, not identity columns, so pg_dump carries their positions
CREATE SEQUENCE pipeline.kafka_source_id_seq;
CREATE SEQUENCE pipeline.kafka_dead_letter_id_seq;

CREATE TABLE pipeline.kafka_sources (
    id bigint PRIMARY KEY DEFAULT pg_catalog.nextval('pipeline.kafka_source_id_seq'),
    name text NOT NULL UNIQUE,
    owner regrole NOT NULL DEFAULT (CURRENT_USER)::regrole,
    brokers text NOT NULL,
    topic text NOT NULL,
    target regclass NOT NULL,
    format text NOT NULL,
    columns text[] NOT NULL,
    paths text[] NOT NULL,
    key_column text,
    partition_column text,
    offset_column text,
    timestamp_column text,
    headers_column text,
    start_position text NOT NULL DEFAULT 'earliest',
    batch_size integer NOT NULL DEFAULT 10000,
    max_batch_latency_ms integer NOT NULL DEFAULT 200,
    parallelism integer NOT NULL DEFAULT 1,
    on_error text NOT NULL DEFAULT 'dead_letter',
    max_error_rate double precision,
    partitions integer[],
    store_rows boolean NOT NULL DEFAULT true,
    enabled boolean NOT NULL DEFAULT true,
    generation bigint NOT NULL DEFAULT 1,
    paused_reason text,
    failed_batches integer NOT NULL DEFAULT 0,
    last_error text,
    last_error_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CHECK (format OPERATOR(pg_catalog.=) ANY (ARRAY['json', 'jsonb', 'text', 'csv', 'access_log'])),
    CHECK (on_error OPERATOR(pg_catalog.=) ANY (ARRAY['dead_letter', 'skip', 'stop'])),
    CHECK (max_error_rate BETWEEN 0 AND 1),
    CHECK (batch_size BETWEEN 1 AND 1000000),
    CHECK (max_batch_latency_ms BETWEEN 1 AND 3600000),
    CHECK (parallelism BETWEEN 1 AND 64),
    CHECK (pg_catalog.cardinality(columns) OPERATOR(pg_catalog.=) pg_catalog.cardinality(paths))
);
COMMENT ON TABLE pipeline.kafka_sources IS
    'Kafka sources: which topic streams into which table, and how; change them with the pipeline.*kafka_source functions';
CREATE TRIGGER kafka_sources_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON pipeline.kafka_sources
    FOR EACH STATEMENT EXECUTE FUNCTION pipeline.catalog_changed();

-- librdkafka properties, such as SASL credentials: readable by the owner only
CREATE TABLE pipeline.kafka_source_properties (
    source_id bigint NOT NULL REFERENCES pipeline.kafka_sources (id) ON DELETE CASCADE,
    owner regrole NOT NULL DEFAULT (CURRENT_USER)::regrole,
    name text NOT NULL,
    value text NOT NULL,
    PRIMARY KEY (source_id, name)
);
COMMENT ON TABLE pipeline.kafka_source_properties IS
    'librdkafka properties of each Kafka source (for example SASL/SSL settings); each role sees only its own';

-- next offset to read per partition; advanced in the same transaction as the rows
CREATE TABLE pipeline.kafka_offsets (
    source_id bigint NOT NULL REFERENCES pipeline.kafka_sources (id) ON DELETE CASCADE,
    owner regrole NOT NULL DEFAULT (CURRENT_USER)::regrole,
    partition integer NOT NULL,
    next_offset bigint NOT NULL,
    high_watermark bigint,
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- read in the minute before updated_at, for kafka_status
    messages_last_minute bigint NOT NULL DEFAULT 0,
    bytes_last_minute bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (source_id, partition)
);
COMMENT ON TABLE pipeline.kafka_offsets IS
    'committed position of each Kafka source per partition: the next offset to read, committed with the rows it produced';

CREATE TABLE pipeline.kafka_dead_letters (
    id bigint PRIMARY KEY DEFAULT pg_catalog.nextval('pipeline.kafka_dead_letter_id_seq'),
    source_id bigint NOT NULL,
    source_name text NOT NULL,
    owner regrole NOT NULL DEFAULT (CURRENT_USER)::regrole,
    partition integer NOT NULL,
    "offset" bigint NOT NULL,
    key bytea,
    payload bytea,
    error text NOT NULL,
    sqlstate text,
    failed_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX ON pipeline.kafka_dead_letters (source_id, partition, "offset");
COMMENT ON TABLE pipeline.kafka_dead_letters IS
    'messages that could not be stored, with their raw bytes and the reason; written in the same transaction as the good rows';

ALTER TABLE pipeline.kafka_sources ENABLE ROW LEVEL SECURITY;
ALTER TABLE pipeline.kafka_source_properties ENABLE ROW LEVEL SECURITY;
ALTER TABLE pipeline.kafka_offsets ENABLE ROW LEVEL SECURITY;
ALTER TABLE pipeline.kafka_dead_letters ENABLE ROW LEVEL SECURITY;
CREATE POLICY owner_only ON pipeline.kafka_sources
    USING (pg_catalog.pg_has_role(owner, 'USAGE'))
    WITH CHECK (owner OPERATOR(pg_catalog.=) (CURRENT_USER)::regrole);
CREATE POLICY owner_only ON pipeline.kafka_source_properties
    USING (pg_catalog.pg_has_role(owner, 'USAGE'))
    -- rows only for one's own kafka_sources, as their owner
    WITH CHECK (pg_catalog.pg_has_role(owner, 'USAGE')
                AND EXISTS (SELECT FROM pipeline.kafka_sources p WHERE p.id OPERATOR(pg_catalog.=) source_id
                                                    AND p.owner OPERATOR(pg_catalog.=) owner));
CREATE POLICY owner_only ON pipeline.kafka_offsets
    USING (pg_catalog.pg_has_role(owner, 'USAGE'))
    -- rows only for one's own kafka_sources, as their owner
    WITH CHECK (pg_catalog.pg_has_role(owner, 'USAGE')
                AND EXISTS (SELECT FROM pipeline.kafka_sources p WHERE p.id OPERATOR(pg_catalog.=) source_id
                                                    AND p.owner OPERATOR(pg_catalog.=) owner));
CREATE POLICY owner_only ON pipeline.kafka_dead_letters
    USING (pg_catalog.pg_has_role(owner, 'USAGE'))
    -- rows only for one's own kafka_sources, as their owner
    WITH CHECK (pg_catalog.pg_has_role(owner, 'USAGE')
                AND EXISTS (SELECT FROM pipeline.kafka_sources p WHERE p.id OPERATOR(pg_catalog.=) source_id
                                                    AND p.owner OPERATOR(pg_catalog.=) owner));

REVOKE ALL ON pipeline.kafka_sources, pipeline.kafka_source_properties,
              pipeline.kafka_offsets, pipeline.kafka_dead_letters FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON pipeline.kafka_sources, pipeline.kafka_source_properties,
              pipeline.kafka_offsets TO PUBLIC;
GRANT SELECT, INSERT, DELETE ON pipeline.kafka_dead_letters TO PUBLIC;
REVOKE ALL ON SEQUENCE pipeline.kafka_source_id_seq, pipeline.kafka_dead_letter_id_seq FROM PUBLIC;
GRANT USAGE ON SEQUENCE pipeline.kafka_source_id_seq, pipeline.kafka_dead_letter_id_seq TO PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('pipeline.kafka_sources', '');
SELECT pg_catalog.pg_extension_config_dump('pipeline.kafka_source_properties', '');
SELECT pg_catalog.pg_extension_config_dump('pipeline.kafka_offsets', '');
SELECT pg_catalog.pg_extension_config_dump('pipeline.kafka_dead_letters', '');
SELECT pg_catalog.pg_extension_config_dump('pipeline.kafka_source_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('pipeline.kafka_dead_letter_id_seq', '');

-- Raises the error for an unknown source (others' sources are invisible too)
CREATE FUNCTION pipeline.kafka_source_id(source_name text)
RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found_id bigint;
BEGIN
    SELECT s.id INTO found_id FROM pipeline.kafka_sources s WHERE s.name OPERATOR(pg_catalog.=) source_name;
    IF found_id IS NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'undefined_object',
            MESSAGE = pg_catalog.format('kafka source "%s" does not exist', source_name),
            HINT = 'SELECT name FROM pipeline.kafka_sources lists the sources you own.';
    END IF;
    RETURN found_id;
END
$$;
COMMENT ON FUNCTION pipeline.kafka_source_id(text) IS
    'id of the Kafka source of that name among those the current role owns; an error if there is none';
REVOKE ALL ON FUNCTION pipeline.kafka_source_id(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.kafka_source_id(text) TO PUBLIC;

-- Checks that a column of the target exists and returns its type
CREATE FUNCTION pipeline.target_column_type(target regclass, column_name text)
RETURNS regtype
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    column_type regtype;
BEGIN
    SELECT a.atttypid::regtype INTO column_type
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid OPERATOR(pg_catalog.=) target
       AND a.attname OPERATOR(pg_catalog.=) column_name
       AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped;
    IF column_type IS NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'undefined_column',
            MESSAGE = pg_catalog.format('column "%s" of relation %s does not exist', column_name, target),
            HINT = 'Name a column of the target table.';
    END IF;
    RETURN column_type;
END
$$;
COMMENT ON FUNCTION pipeline.target_column_type(regclass, text) IS
    'type of a column of a source''s target table; an error naming the column if it does not exist';
REVOKE ALL ON FUNCTION pipeline.target_column_type(regclass, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.target_column_type(regclass, text) TO PUBLIC;

CREATE FUNCTION pipeline.check_kafka_start(start_at text)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF start_at OPERATOR(pg_catalog.=) ANY (ARRAY['earliest', 'latest']) THEN
        RETURN start_at;
    END IF;
    BEGIN
        RETURN pg_catalog.to_char(start_at::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');
    EXCEPTION WHEN others THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format('invalid start position "%s"', start_at),
            HINT = 'Use earliest, latest or a timestamp such as ''2026-01-31 12:00+00''.';
    END;
END
$$;
COMMENT ON FUNCTION pipeline.check_kafka_start(text) IS
    'normalises a Kafka start position (earliest, latest or a timestamp); an error otherwise';
REVOKE ALL ON FUNCTION pipeline.check_kafka_start(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.check_kafka_start(text) TO PUBLIC;

CREATE FUNCTION pipeline.check_kafka_settings(settings jsonb, allowed text[])
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    key text;
BEGIN
    IF settings IS NULL OR pg_catalog.jsonb_typeof(settings) OPERATOR(pg_catalog.<>) 'object' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'options must be a JSON object',
            HINT = 'For example ''{"batch_size": 5000}''.';
    END IF;
    FOR key IN SELECT pg_catalog.jsonb_object_keys(settings) LOOP
        IF NOT key OPERATOR(pg_catalog.=) ANY (allowed) THEN
            RAISE EXCEPTION USING
                ERRCODE = 'invalid_parameter_value',
                MESSAGE = pg_catalog.format('unknown option "%s"', key),
                HINT = 'Valid options are: ' OPERATOR(pg_catalog.||) pg_catalog.array_to_string(allowed, ', ') OPERATOR(pg_catalog.||) '.';
        END IF;
    END LOOP;
    IF settings ? 'batch_size' AND (CASE WHEN (settings->>'batch_size') ~ '^[0-9]{1,7}$'
                                   THEN (settings->>'batch_size')::int NOT BETWEEN 1 AND 1000000
                                   ELSE true END) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format('invalid batch_size %s', settings->'batch_size'),
            HINT = 'Use a number of rows (or messages) between 1 and 1000000.';
    END IF;
    IF settings ? 'max_batch_latency_ms' AND (CASE WHEN (settings->>'max_batch_latency_ms') ~ '^[0-9]{1,7}$'
                                   THEN (settings->>'max_batch_latency_ms')::int NOT BETWEEN 1 AND 3600000
                                   ELSE true END) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format('invalid max_batch_latency_ms %s', settings->'max_batch_latency_ms'),
            HINT = 'Use milliseconds between 1 and 3600000.';
    END IF;
    IF settings ? 'parallelism' AND (CASE WHEN (settings->>'parallelism') ~ '^[0-9]{1,2}$'
                                   THEN (settings->>'parallelism')::int NOT BETWEEN 1 AND 64
                                   ELSE true END) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format('invalid parallelism %s', settings->'parallelism'),
            HINT = 'Use a number of workers between 1 and 64; each takes one of max_worker_processes.';
    END IF;
    IF settings ? 'max_error_rate' AND (CASE WHEN pg_catalog.jsonb_typeof(settings->'max_error_rate') OPERATOR(pg_catalog.=) 'number'
                                             THEN (settings->>'max_error_rate')::float8 NOT BETWEEN 0 AND 1
                                             ELSE true END) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format('invalid max_error_rate %s', settings->'max_error_rate'),
            HINT = 'Use the largest share of bad messages per batch to accept, between 0 and 1 (0.01 is 1 %).';
    END IF;
    IF settings ? 'partitions' AND (pg_catalog.jsonb_typeof(settings->'partitions') OPERATOR(pg_catalog.<>) 'array'
       OR pg_catalog.jsonb_array_length(settings->'partitions') OPERATOR(pg_catalog.=) 0
       OR EXISTS (SELECT FROM pg_catalog.jsonb_array_elements(settings->'partitions') e
                   WHERE NOT (e #>> '{}') ~ '^[0-9]{1,6}$')) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format('invalid partitions %s', settings->'partitions'),
            HINT = 'List the partition numbers this source reads, for example [0, 1]; leave the option out to read them all.';
    END IF;
    IF settings ? 'on_error' AND NOT (settings->>'on_error') OPERATOR(pg_catalog.=) ANY (ARRAY['dead_letter', 'skip', 'stop']) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format('invalid on_error %s', settings->'on_error'),
            HINT = 'Use dead_letter (keep bad messages in pipeline.kafka_dead_letters), skip, or stop.';
    END IF;
END
$$;
COMMENT ON FUNCTION pipeline.check_kafka_settings(jsonb, text[]) IS
    'validates the options of a Kafka source against the allowed names and ranges';
REVOKE ALL ON FUNCTION pipeline.check_kafka_settings(jsonb, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.check_kafka_settings(jsonb, text[]) TO PUBLIC;

CREATE FUNCTION pipeline.create_kafka_source(
    name text,
    brokers text,
    topic text,
    target regclass,
    format text DEFAULT 'json',
    options jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    metadata_kinds constant text[] := ARRAY['key', 'partition', 'offset', 'timestamp', 'headers'];
    metadata_types constant text[] := ARRAY['text, character varying, bytea',
                                            'integer, bigint',
                                            'bigint, numeric',
                                            'timestamp with time zone, timestamp without time zone',
                                            'jsonb, json'];
    access_log_fields constant text[] := ARRAY['client', 'ident', 'auth_user', 'time', 'request', 'method',
                                               'path', 'protocol', 'status', 'bytes', 'referer', 'user_agent', 'extra'];
    kind text;
    column_name text;
    column_type regtype;
    metadata_columns text[] := '{}';
    data_columns text[] := '{}';
    data_paths text[] := '{}';
    new_id bigint;
    property record;
BEGIN
    IF name IS NULL OR pg_catalog.btrim(name) OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'kafka source name must not be empty',
            HINT = 'Give the source a name, for example ''pageviews''.';
    END IF;
    IF brokers IS NULL OR brokers !~ '^[A-Za-z0-9._-]+:[0-9]{1,5}(,[A-Za-z0-9._-]+:[0-9]{1,5})*$' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format('invalid broker list "%s"', brokers),
            HINT = 'Give host:port pairs separated by commas, for example ''kafka1:9092,kafka2:9092''.';
    END IF;
    IF topic IS NULL OR topic !~ '^[A-Za-z0-9._-]{1,249}$' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format('invalid topic name "%s"', topic),
            HINT = 'Kafka topic names have 1 to 249 letters, digits, dots, underscores or hyphens.';
    END IF;
    IF format IS NULL OR NOT format OPERATOR(pg_catalog.=) ANY (ARRAY['json', 'jsonb', 'text', 'csv', 'access_log']) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format('unknown format "%s"', format),
            HINT = 'Use json (fields into columns), jsonb or text (whole message into one column), csv, or access_log (web server log lines).';
    END IF;
    PERFORM pipeline.check_kafka_settings(options, ARRAY['columns', 'header', 'payload_column', 'key_column',
        'partition_column', 'offset_column', 'timestamp_column', 'headers_column', 'start', 'batch_size',
        'max_batch_latency_ms', 'parallelism', 'on_error', 'max_error_rate', 'partitions',
        'store_rows', 'kafka_properties']);
    IF options ? 'store_rows' AND pg_catalog.jsonb_typeof(options->'store_rows') OPERATOR(pg_catalog.<>) 'boolean' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'option "store_rows" must be true or false',
            HINT = 'false keeps no rows in the target table: they only feed the aggregates over it.';
    END IF;

    IF (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) target)
       NOT IN ('r', 'p') THEN
        RAISE EXCEPTION USING ERRCODE = 'wrong_object_type',
            MESSAGE = pg_catalog.format('%s is not a table', target),
            HINT = 'A Kafka source writes into a table or a partitioned table.';
    END IF;
    IF NOT pg_catalog.has_table_privilege(target, 'INSERT') THEN
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
            MESSAGE = pg_catalog.format('permission denied for table %s', target),
            HINT = 'A source writes as the role that creates it: grant that role INSERT on the table, or create the source as a role that has it.';
    END IF;
    IF NOT (SELECT r.rolcanlogin FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER) THEN
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
            MESSAGE = pg_catalog.format('role "%s" cannot log in', CURRENT_USER),
            HINT = 'Source workers connect as the role that owns the source: give it LOGIN, or create the source as a role that has it.';
    END IF;

    -- Kafka metadata columns
    FOR i IN 1 .. pg_catalog.array_length(metadata_kinds, 1) LOOP
        kind := metadata_kinds[i];
        column_name := options->>(kind OPERATOR(pg_catalog.||) '_column');
        CONTINUE WHEN column_name IS NULL;
        column_type := pipeline.target_column_type(target, column_name);
        IF NOT column_type::text OPERATOR(pg_catalog.=) ANY (pg_catalog.string_to_array(metadata_types[i], ', ')) THEN
            RAISE EXCEPTION USING ERRCODE = 'datatype_mismatch',
                MESSAGE = pg_catalog.format('column "%s" of type %s cannot hold the Kafka message %s', column_name, column_type, kind),
                HINT = pg_catalog.format('Use a column of type %s.', pg_catalog.replace(metadata_types[i], ', ', ' or '));
        END IF;
        metadata_columns := metadata_columns OPERATOR(pg_catalog.||) column_name;
    END LOOP;

    -- Payload columns, in the order the worker fills them
    IF options ? 'header' AND format OPERATOR(pg_catalog.<>) 'csv' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'option "header" is for format csv',
            HINT = 'Map JSON fields to columns with the option columns.';
    END IF;
    IF format OPERATOR(pg_catalog.=) ANY (ARRAY['json', 'access_log']) AND options ? 'columns' THEN
        IF pg_catalog.jsonb_typeof(options->'columns') OPERATOR(pg_catalog.<>) 'object' THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = CASE format WHEN 'json' THEN 'option "columns" must map column names to JSON paths for format json'
                          ELSE 'option "columns" must map column names to access log fields for format access_log' END,
                HINT = CASE format WHEN 'json' THEN 'For example ''{"columns": {"user_id": "user.id", "url": "page.url"}}''.'
                       ELSE 'For example ''{"columns": {"ip": "client", "agent": "user_agent"}}''.' END;
        END IF;
        SELECT pg_catalog.array_agg(c.key ORDER BY c.key), pg_catalog.array_agg(c.value ORDER BY c.key)
          INTO data_columns, data_paths
          FROM pg_catalog.jsonb_each_text(options->'columns') c;
    ELSIF format OPERATOR(pg_catalog.=) 'csv' AND options ? 'header' THEN
        IF options ? 'columns' OR pg_catalog.jsonb_typeof(options->'header') OPERATOR(pg_catalog.<>) 'string' THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = 'option "header" must be the CSV header line, without option "columns"',
                HINT = 'For example ''{"header": "Store_ID,Amount,Sold_At"}'': each field fills the column of that name.';
        END IF;
        -- a header field names its column exactly, or else case-insensitively
        SELECT pg_catalog.array_agg(COALESCE(exact.attname::text, folded.attname, h.field) ORDER BY h.n)
          INTO data_columns
          FROM pg_catalog.regexp_split_to_table(options->>'header', ',') WITH ORDINALITY AS f(raw, n)
         CROSS JOIN LATERAL (SELECT pg_catalog.replace(pg_catalog.regexp_replace(pg_catalog.btrim(f.raw),
                                 '^"(.*)"$', '\1'), '""', '"') AS field, f.n) h
          LEFT JOIN pg_catalog.pg_attribute exact
                 ON exact.attrelid OPERATOR(pg_catalog.=) target AND exact.attnum OPERATOR(pg_catalog.>) 0
                AND NOT exact.attisdropped AND exact.attname OPERATOR(pg_catalog.=) h.field
          LEFT JOIN LATERAL (SELECT pg_catalog.min(a.attname::text) AS attname FROM pg_catalog.pg_attribute a
                              WHERE a.attrelid OPERATOR(pg_catalog.=) target AND a.attnum OPERATOR(pg_catalog.>) 0
                                AND NOT a.attisdropped
                                AND pg_catalog.lower(a.attname::text) OPERATOR(pg_catalog.=) pg_catalog.lower(h.field)
                             HAVING pg_catalog.count(*) OPERATOR(pg_catalog.=) 1) folded ON true;
        data_paths := data_columns;
    ELSIF format OPERATOR(pg_catalog.=) 'csv' AND options ? 'columns' THEN
        IF pg_catalog.jsonb_typeof(options->'columns') OPERATOR(pg_catalog.<>) 'array' THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = 'option "columns" must list the columns in CSV field order for format csv',
                HINT = 'For example ''{"columns": ["store_id", "amount", "sold_at"]}''.';
        END IF;
        SELECT pg_catalog.array_agg(c.value ORDER BY c.ordinality), pg_catalog.array_agg(c.value ORDER BY c.ordinality)
          INTO data_columns, data_paths
          FROM pg_catalog.jsonb_array_elements_text(options->'columns') WITH ORDINALITY c;
    ELSIF format OPERATOR(pg_catalog.=) ANY (ARRAY['jsonb', 'text']) THEN
        IF options ? 'payload_column' THEN
            data_columns := ARRAY[options->>'payload_column'];
        ELSE
            SELECT pg_catalog.array_agg(a.attname::text ORDER BY a.attnum) INTO data_columns
              FROM pg_catalog.pg_attribute a
             WHERE a.attrelid OPERATOR(pg_catalog.=) target AND a.attnum OPERATOR(pg_catalog.>) 0
               AND NOT a.attisdropped AND a.attgenerated OPERATOR(pg_catalog.=) ''
               AND NOT a.attname::text OPERATOR(pg_catalog.=) ANY (metadata_columns);
            IF pg_catalog.cardinality(data_columns) OPERATOR(pg_catalog.<>) 1 THEN
                RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                    MESSAGE = pg_catalog.format('cannot tell which column of %s takes the message', target),
                    HINT = 'Name it with the option payload_column, for example ''{"payload_column": "body"}''.';
            END IF;
        END IF;
        data_paths := ARRAY[''];
    ELSE
        -- every other insertable column, filled from the same-named key, CSV
        -- field or access log field (for access_log, the columns named after one)
        SELECT pg_catalog.array_agg(a.attname::text ORDER BY a.attnum), pg_catalog.array_agg(a.attname::text ORDER BY a.attnum)
          INTO data_columns, data_paths
          FROM pg_catalog.pg_attribute a
         WHERE a.attrelid OPERATOR(pg_catalog.=) target AND a.attnum OPERATOR(pg_catalog.>) 0
           AND NOT a.attisdropped AND a.attgenerated OPERATOR(pg_catalog.=) ''
           AND NOT a.attname::text OPERATOR(pg_catalog.=) ANY (metadata_columns)
           AND (format OPERATOR(pg_catalog.<>) 'access_log' OR a.attname::text OPERATOR(pg_catalog.=) ANY (access_log_fields));
    END IF;
    IF format OPERATOR(pg_catalog.=) 'access_log' THEN
        FOR i IN 1 .. COALESCE(pg_catalog.cardinality(data_paths), 0) LOOP
            -- the line's time has an offset, which a timestamp without time zone would drop
            IF data_paths[i] OPERATOR(pg_catalog.=) 'time'
               AND pipeline.target_column_type(target, data_columns[i]) OPERATOR(pg_catalog.=) 'timestamp without time zone'::regtype THEN
                RAISE EXCEPTION USING ERRCODE = 'datatype_mismatch',
                    MESSAGE = pg_catalog.format('column "%s" of type timestamp without time zone would drop the offset of the log line''s time', data_columns[i]),
                    HINT = 'Use a timestamptz column for the field time.';
            END IF;
            IF NOT data_paths[i] OPERATOR(pg_catalog.=) ANY (access_log_fields) THEN
                RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                    MESSAGE = pg_catalog.format('"%s" is not a field of an access log line', data_paths[i]),
                    HINT = 'The fields are ' OPERATOR(pg_catalog.||) pg_catalog.array_to_string(access_log_fields, ', ') OPERATOR(pg_catalog.||) '.';
            END IF;
        END LOOP;
    END IF;
    IF pg_catalog.array_position(data_columns, NULL) IS NOT NULL OR pg_catalog.array_position(data_paths, NULL) IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'option "columns" must not hold null',
            HINT = 'Name each column and what fills it with a string, for example ''{"columns": {"user_id": "user.id"}}''.';
    END IF;
    IF data_columns IS NULL OR pg_catalog.cardinality(data_columns) OPERATOR(pg_catalog.=) 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format('no column of %s is filled from the message', target),
            HINT = 'Add columns to the table, or map them with the option columns.';
    END IF;
    FOR i IN 1 .. pg_catalog.cardinality(data_columns) LOOP
        column_type := pipeline.target_column_type(target, data_columns[i]);
        IF data_columns[i] OPERATOR(pg_catalog.=) ANY (metadata_columns) THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = pg_catalog.format('column "%s" is filled twice', data_columns[i]),
                HINT = 'A column takes either a message field or Kafka metadata, not both.';
        END IF;
        IF format OPERATOR(pg_catalog.=) 'json'
           AND ((SELECT t.typcategory FROM pg_catalog.pg_type t WHERE t.oid OPERATOR(pg_catalog.=) column_type) OPERATOR(pg_catalog.=) ANY (ARRAY['A', 'C'])) THEN
            RAISE EXCEPTION USING ERRCODE = 'datatype_mismatch',
                MESSAGE = pg_catalog.format('column "%s" of type %s cannot be filled from a JSON field', data_columns[i], column_type),
                HINT = 'Use json or jsonb for nested values, or a scalar type.';
        END IF;
        IF format OPERATOR(pg_catalog.=) 'jsonb' AND NOT column_type::text OPERATOR(pg_catalog.=) ANY (ARRAY['json', 'jsonb']) THEN
            RAISE EXCEPTION USING ERRCODE = 'datatype_mismatch',
                MESSAGE = pg_catalog.format('column "%s" of type %s cannot hold a whole JSON message', data_columns[i], column_type),
                HINT = 'Use a jsonb (or json) column, or format text.';
        END IF;
        IF format OPERATOR(pg_catalog.=) 'text' AND NOT column_type::text OPERATOR(pg_catalog.=) ANY (ARRAY['text', 'character varying', 'json', 'jsonb', 'xml']) THEN
            RAISE EXCEPTION USING ERRCODE = 'datatype_mismatch',
                MESSAGE = pg_catalog.format('column "%s" of type %s cannot hold a whole text message', data_columns[i], column_type),
                HINT = 'Use a text column, or format json to fill typed columns.';
        END IF;
    END LOOP;

    IF options ? 'kafka_properties' THEN
        IF pg_catalog.jsonb_typeof(options->'kafka_properties') OPERATOR(pg_catalog.<>) 'object' THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = 'option "kafka_properties" must be a JSON object of librdkafka properties',
                HINT = 'For example ''{"kafka_properties": {"security.protocol": "SASL_SSL"}}''.';
        END IF;
        FOR property IN SELECT * FROM pg_catalog.jsonb_each(options->'kafka_properties') LOOP
            IF property.key OPERATOR(pg_catalog.=) ANY (ARRAY['bootstrap.servers', 'metadata.broker.list',
                    'group.id', 'enable.auto.commit', 'enable.auto.offset.store', 'auto.offset.reset',
                    'enable.partition.eof', 'log.queue']) THEN
                RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                    MESSAGE = pg_catalog.format('librdkafka property "%s" is managed by pg_pipeline', property.key),
                    HINT = 'Offsets live in pipeline.kafka_offsets and brokers are an argument; leave this property out.';
            END IF;
            IF pg_catalog.jsonb_typeof(property.value) NOT IN ('string', 'number', 'boolean') THEN
                RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                    MESSAGE = pg_catalog.format('librdkafka property "%s" must be a string, number or boolean', property.key),
                    HINT = 'librdkafka properties are flat name/value pairs.';
            END IF;
        END LOOP;
    END IF;

    BEGIN
        INSERT INTO pipeline.kafka_sources (name, brokers, topic, target, format, columns, paths,
            key_column, partition_column, offset_column, timestamp_column, headers_column, start_position,
            batch_size, max_batch_latency_ms, parallelism, on_error, max_error_rate, partitions,
            store_rows)
        VALUES (name, brokers, topic, target, format, data_columns, data_paths,
            options->>'key_column', options->>'partition_column', options->>'offset_column',
            options->>'timestamp_column', options->>'headers_column',
            pipeline.check_kafka_start(COALESCE(options->>'start', 'earliest')),
            -- a fold costs per batch about one update per touched group: larger batches for pure streams
            COALESCE((options->>'batch_size')::int,
                     CASE WHEN (options->>'store_rows')::boolean IS FALSE THEN 100000 ELSE 10000 END),
            COALESCE((options->>'max_batch_latency_ms')::int, 200),
            COALESCE((options->>'parallelism')::int, 1),
            COALESCE(options->>'on_error', 'dead_letter'),
            (options->>'max_error_rate')::float8,
            (SELECT pg_catalog.array_agg(DISTINCT (e #>> '{}')::int)
               FROM pg_catalog.jsonb_array_elements(options->'partitions') e),
            COALESCE((options->>'store_rows')::boolean, true))
        RETURNING id INTO new_id;
    EXCEPTION WHEN unique_violation THEN
        RAISE EXCEPTION USING ERRCODE = 'duplicate_object',
            MESSAGE = pg_catalog.format('kafka source "%s" already exists', name),
            HINT = 'Drop it first with pipeline.drop_kafka_source, or choose another name.';
    END;

    INSERT INTO pipeline.kafka_source_properties (source_id, name, value)
    SELECT new_id, p.key, p.value
      FROM pg_catalog.jsonb_each_text(COALESCE(options->'kafka_properties', '{}')) p;
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION pipeline.create_kafka_source(text, text, text, regclass, text, jsonb) IS
    'creates a Kafka source: background workers stream the topic into the target table, exactly once; returns its id';
REVOKE ALL ON FUNCTION pipeline.create_kafka_source(text, text, text, regclass, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.create_kafka_source(text, text, text, regclass, text, jsonb) TO PUBLIC;

CREATE FUNCTION pipeline.create_target_table(
    name text,
    columns text,
    search_path text DEFAULT pg_catalog.current_setting('search_path'))
RETURNS regclass
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    parts text[];
    qualified text;
    created regclass;
BEGIN
    IF name IS NULL OR pg_catalog.btrim(name) OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'table name must not be empty',
            HINT = 'Give the table a name, for example ''clicks'' or ''analytics.clicks''.';
    END IF;
    BEGIN
        parts := pg_catalog.parse_ident(name);
    EXCEPTION WHEN invalid_parameter_value THEN
        parts := NULL;
    END;
    IF parts IS NULL OR pg_catalog.cardinality(parts) OPERATOR(pg_catalog.>) 2 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_name',
            MESSAGE = pg_catalog.format('invalid table name "%s"', name),
            HINT = 'Give a table name, optionally with its schema: clicks, analytics.clicks or "Click Log".';
    END IF;
    -- one CREATE TABLE statement: a semicolon could end it and start another
    IF columns IS NULL OR pg_catalog.btrim(columns) OPERATOR(pg_catalog.=) ''
       OR pg_catalog.strpos(columns, ';') OPERATOR(pg_catalog.>) 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'columns must be a column list without semicolons',
            HINT = 'Write the columns as in CREATE TABLE, for example ''user_id bigint, url text, seen_at timestamptz''.';
    END IF;
    SELECT pg_catalog.string_agg(pg_catalog.quote_ident(p), '.') INTO qualified
      FROM pg_catalog.unnest(parts) p;

    -- names in the column list (types, defaults) resolve as the caller would resolve them
    PERFORM pg_catalog.set_config('search_path', search_path, true);
    EXECUTE pg_catalog.format('CREATE TABLE %s (%s)', qualified, columns);
    created := pg_catalog.to_regclass(qualified);
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    RETURN created;
END
$$;
COMMENT ON FUNCTION pipeline.create_target_table(text, text, text) IS
    'creates a table from a column list (as in CREATE TABLE) in the caller''s schema, owned by the caller, and returns it: a target for create_kafka_source';
REVOKE ALL ON FUNCTION pipeline.create_target_table(text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.create_target_table(text, text, text) TO PUBLIC;

CREATE FUNCTION pipeline.parse_access_log(line text,
    OUT client text, OUT ident text, OUT auth_user text, OUT "time" timestamptz, OUT request text,
    OUT method text, OUT path text, OUT protocol text, OUT status integer, OUT bytes bigint,
    OUT referer text, OUT user_agent text, OUT extra text)
RETURNS record
LANGUAGE C STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pipeline_parse_access_log';
COMMENT ON FUNCTION pipeline.parse_access_log(text) IS
    'the fields of a web server access log line (Common or Combined Log Format, as Kafka sources of format access_log read it); an error saying what is wrong otherwise';
REVOKE ALL ON FUNCTION pipeline.parse_access_log(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.parse_access_log(text) TO PUBLIC;

CREATE FUNCTION pipeline.drop_kafka_source(name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    source bigint := pipeline.kafka_source_id(name);
BEGIN
    DELETE FROM pipeline.kafka_sources s WHERE s.id OPERATOR(pg_catalog.=) source;
END
$$;
COMMENT ON FUNCTION pipeline.drop_kafka_source(text) IS
    'drops a Kafka source and its offsets and stops its workers; its dead letters stay';
REVOKE ALL ON FUNCTION pipeline.drop_kafka_source(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.drop_kafka_source(text) TO PUBLIC;

CREATE FUNCTION pipeline.pause_kafka_source(name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    source bigint := pipeline.kafka_source_id(name);
BEGIN
    UPDATE pipeline.kafka_sources s
       SET enabled = false, paused_reason = 'paused by pipeline.pause_kafka_source',
           generation = s.generation OPERATOR(pg_catalog.+) 1
     WHERE s.id OPERATOR(pg_catalog.=) source;
END
$$;
COMMENT ON FUNCTION pipeline.pause_kafka_source(text) IS
    'stops a Kafka source''s workers after their current batch; its position is kept';
REVOKE ALL ON FUNCTION pipeline.pause_kafka_source(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.pause_kafka_source(text) TO PUBLIC;

CREATE FUNCTION pipeline.resume_kafka_source(name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    source bigint := pipeline.kafka_source_id(name);
BEGIN
    UPDATE pipeline.kafka_sources s
       SET enabled = true, paused_reason = NULL, failed_batches = 0,
           generation = s.generation OPERATOR(pg_catalog.+) 1
     WHERE s.id OPERATOR(pg_catalog.=) source;
END
$$;
COMMENT ON FUNCTION pipeline.resume_kafka_source(text) IS
    'restarts a paused Kafka source from its committed offsets';
REVOKE ALL ON FUNCTION pipeline.resume_kafka_source(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.resume_kafka_source(text) TO PUBLIC;

CREATE FUNCTION pipeline.alter_kafka_source(name text, options jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    source bigint := pipeline.kafka_source_id(name);
BEGIN
    PERFORM pipeline.check_kafka_settings(options,
        ARRAY['batch_size', 'max_batch_latency_ms', 'parallelism', 'on_error', 'max_error_rate', 'partitions']);
    UPDATE pipeline.kafka_sources s
       SET batch_size = COALESCE((options->>'batch_size')::int, s.batch_size),
           max_batch_latency_ms = COALESCE((options->>'max_batch_latency_ms')::int, s.max_batch_latency_ms),
           parallelism = COALESCE((options->>'parallelism')::int, s.parallelism),
           on_error = COALESCE(options->>'on_error', s.on_error),
           max_error_rate = CASE WHEN options ? 'max_error_rate'
                                 THEN (options->>'max_error_rate')::float8 ELSE s.max_error_rate END,
           partitions = CASE WHEN options ? 'partitions'
                             THEN (SELECT pg_catalog.array_agg(DISTINCT (e #>> '{}')::int)
                                     FROM pg_catalog.jsonb_array_elements(options->'partitions') e)
                             ELSE s.partitions END,
           generation = s.generation OPERATOR(pg_catalog.+) 1
     WHERE s.id OPERATOR(pg_catalog.=) source;
END
$$;
COMMENT ON FUNCTION pipeline.alter_kafka_source(text, jsonb) IS
    'changes batch_size, max_batch_latency_ms, parallelism, on_error, max_error_rate or partitions of a Kafka source; workers restart from the committed offsets';
REVOKE ALL ON FUNCTION pipeline.alter_kafka_source(text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.alter_kafka_source(text, jsonb) TO PUBLIC;

CREATE FUNCTION pipeline.reset_kafka_source(name text, start_at text DEFAULT 'earliest')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    source bigint := pipeline.kafka_source_id(name);
    explicit jsonb;
BEGIN
    IF pg_catalog.left(pg_catalog.btrim(start_at), 1) OPERATOR(pg_catalog.=) '{' THEN
        BEGIN
            explicit := start_at::jsonb;
            PERFORM (e.key)::int, (e.value #>> '{}')::bigint FROM pg_catalog.jsonb_each(explicit) e;
        EXCEPTION WHEN others THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = pg_catalog.format('invalid offsets "%s"', start_at),
                HINT = 'Map partitions to offsets, for example ''{"0": 1200, "1": 1180}''.';
        END;
        INSERT INTO pipeline.kafka_offsets AS o (source_id, owner, partition, next_offset)
        SELECT source, s.owner, (e.key)::int, (e.value #>> '{}')::bigint
          FROM pg_catalog.jsonb_each(explicit) e, pipeline.kafka_sources s
         WHERE s.id OPERATOR(pg_catalog.=) source
        ON CONFLICT (source_id, partition) DO UPDATE
           SET next_offset = excluded.next_offset, updated_at = pg_catalog.now();
    ELSE
        DELETE FROM pipeline.kafka_offsets o WHERE o.source_id OPERATOR(pg_catalog.=) source;
        UPDATE pipeline.kafka_sources s SET start_position = pipeline.check_kafka_start(start_at)
         WHERE s.id OPERATOR(pg_catalog.=) source;
    END IF;
    UPDATE pipeline.kafka_sources s
       SET generation = s.generation OPERATOR(pg_catalog.+) 1, last_error = NULL, last_error_at = NULL
     WHERE s.id OPERATOR(pg_catalog.=) source;
END
$$;
COMMENT ON FUNCTION pipeline.reset_kafka_source(text, text) IS
    'moves a Kafka source to earliest, latest, a timestamp, or explicit offsets given as JSON {"partition": offset}';
REVOKE ALL ON FUNCTION pipeline.reset_kafka_source(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.reset_kafka_source(text, text) TO PUBLIC;

-- security_invoker: each role sees the status of its own sources only
CREATE VIEW pipeline.kafka_status WITH (security_invoker = true) AS
SELECT s.name AS source,
       o.partition,
       w.pid AS worker_pid,
       CASE WHEN NOT s.enabled THEN 'paused'
            WHEN w.pid IS NULL THEN 'starting'
            ELSE w.state END AS state,
       o.next_offset AS committed_offset,
       o.high_watermark,
       GREATEST(o.high_watermark OPERATOR(pg_catalog.-) o.next_offset, 0) AS lag,
       o.updated_at AS committed_at,
       -- a partition with no commit in the last minute read nothing in it
       CASE WHEN o.updated_at OPERATOR(pg_catalog.>) (pg_catalog.now() OPERATOR(pg_catalog.-) '1 minute'::interval)
            THEN pg_catalog.round(o.messages_last_minute OPERATOR(pg_catalog./) 60.0, 1)
            WHEN o.partition IS NOT NULL THEN 0 END AS messages_per_second,
       CASE WHEN o.updated_at OPERATOR(pg_catalog.>) (pg_catalog.now() OPERATOR(pg_catalog.-) '1 minute'::interval)
            THEN pg_catalog.round(o.bytes_last_minute OPERATOR(pg_catalog./) 60.0, 1)
            WHEN o.partition IS NOT NULL THEN 0 END AS bytes_per_second,
       pg_catalog.round(w.messages_per_second::numeric, 1) AS worker_messages_per_second,
       pg_catalog.round(w.bytes_per_second::numeric, 1) AS worker_bytes_per_second,
       COALESCE(s.paused_reason, s.last_error) AS last_error,
       s.last_error_at
  FROM pipeline.kafka_sources AS s
  LEFT JOIN pipeline.kafka_offsets AS o ON o.source_id OPERATOR(pg_catalog.=) s.id
  LEFT JOIN pipeline.worker_processes() AS w
         ON w.kind OPERATOR(pg_catalog.=) 'kafka source'
        AND w.database_oid OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database d
                                                    WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
        AND w.object_id OPERATOR(pg_catalog.=) s.id
        AND w.object_index OPERATOR(pg_catalog.=) (o.partition OPERATOR(pg_catalog.%) s.parallelism);
COMMENT ON VIEW pipeline.kafka_status IS
    'one row per Kafka source and partition: worker, state, committed offset, high watermark, lag, throughput of the worker over the last minute, last error';
REVOKE ALL ON pipeline.kafka_status FROM PUBLIC;
GRANT SELECT ON pipeline.kafka_status TO PUBLIC;

-------------------------------------------------------------------------------
-- Continuous aggregates
--
-- A GROUP BY query over a table, kept current by statement triggers that fold
-- each statement's rows into stored transition states (in C, through
-- PostgreSQL's own partial aggregation), in the writer's transaction.  The
-- output table holds the finished values, one row per group.
-------------------------------------------------------------------------------

CREATE SEQUENCE pipeline.aggregate_id_seq;

CREATE TABLE pipeline.aggregates (
    id bigint PRIMARY KEY DEFAULT pg_catalog.nextval('pipeline.aggregate_id_seq'),
    name text NOT NULL UNIQUE,
    owner regrole NOT NULL DEFAULT (CURRENT_USER)::regrole,
    query text NOT NULL,
    source regclass NOT NULL,
    output regclass NOT NULL,
    state_table regclass NOT NULL,
    column_names text[] NOT NULL,
    column_exprs text[] NOT NULL,
    key_columns boolean[] NOT NULL,
    where_clause text,
    search_path text NOT NULL,
    window_pane text,
    window_size interval,
    rollup_of bigint,   -- a rollup: its aggregate (no foreign key: it would make dumps circular)
    -- streamed rows whose time key is older than the latest one minus allowed_lateness go to late_table
    time_key text,
    allowed_lateness interval,
    late_table regclass,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CHECK ((window_pane IS NULL) OPERATOR(pg_catalog.=) (window_size IS NULL)),
    CHECK ((allowed_lateness IS NULL) OPERATOR(pg_catalog.=) (late_table IS NULL))
);
COMMENT ON TABLE pipeline.aggregates IS
    'continuous aggregates: the query as given, and its keys, aggregates and filter as they are folded; change them with the pipeline.*aggregate functions';
ALTER TABLE pipeline.aggregates ENABLE ROW LEVEL SECURITY;
CREATE POLICY owner_only ON pipeline.aggregates
    USING (pg_catalog.pg_has_role(owner, 'USAGE'))
    WITH CHECK (owner OPERATOR(pg_catalog.=) (CURRENT_USER)::regrole);
REVOKE ALL ON pipeline.aggregates FROM PUBLIC;
GRANT SELECT, INSERT, DELETE ON pipeline.aggregates TO PUBLIC;
REVOKE ALL ON SEQUENCE pipeline.aggregate_id_seq FROM PUBLIC;
GRANT USAGE ON SEQUENCE pipeline.aggregate_id_seq TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('pipeline.aggregates', '');
SELECT pg_catalog.pg_extension_config_dump('pipeline.aggregate_id_seq', '');

CREATE FUNCTION pipeline.aggregate_describe(
    query text,
    search_path text,
    OUT source oid,
    OUT column_names text[],
    OUT column_exprs text[],
    OUT column_kinds text[],
    OUT column_types text[],
    OUT state_types text[],
    OUT where_clause text,
    OUT internal_search_path text)
RETURNS record
LANGUAGE C STRICT VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pipeline_aggregate_describe';
COMMENT ON FUNCTION pipeline.aggregate_describe(text, text) IS
    'checks the query of an aggregate (names resolved with the given search_path) and returns its parts as stored';
REVOKE ALL ON FUNCTION pipeline.aggregate_describe(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.aggregate_describe(text, text) TO PUBLIC;

CREATE FUNCTION pipeline.aggregate_trigger()
RETURNS trigger
LANGUAGE C
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pipeline_aggregate_trigger';
COMMENT ON FUNCTION pipeline.aggregate_trigger() IS
    'trigger: folds a statement''s inserted, updated or deleted rows into an aggregate; created by pipeline.create_aggregate';
REVOKE ALL ON FUNCTION pipeline.aggregate_trigger() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.aggregate_trigger() TO PUBLIC;

CREATE FUNCTION pipeline.aggregate_backfill(aggregate_id bigint, owner oid)
RETURNS void
LANGUAGE C STRICT VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pipeline_aggregate_backfill';
COMMENT ON FUNCTION pipeline.aggregate_backfill(bigint, oid) IS
    'folds every row of an aggregate''s table into its empty states; used by pipeline.create_aggregate and pipeline.rebuild_aggregate';
REVOKE ALL ON FUNCTION pipeline.aggregate_backfill(bigint, oid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.aggregate_backfill(bigint, oid) TO PUBLIC;

-- Raises the error for an unknown aggregate (others' aggregates are invisible too)
CREATE FUNCTION pipeline.aggregate_window(aggregate_id bigint, window_end timestamptz)
RETURNS SETOF record
LANGUAGE C STRICT STABLE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pipeline_aggregate_window';
COMMENT ON FUNCTION pipeline.aggregate_window(bigint, timestamptz) IS
    'a sliding window of an aggregate: its panes in (window_end - size, window_end] combined per group of the other keys; query <output>_window() or the view <output>_live instead';
REVOKE ALL ON FUNCTION pipeline.aggregate_window(bigint, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.aggregate_window(bigint, timestamptz) TO PUBLIC;

CREATE FUNCTION pipeline.aggregate_id(aggregate_name text)
RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found_id bigint;
BEGIN
    SELECT a.id INTO found_id FROM pipeline.aggregates a WHERE a.name OPERATOR(pg_catalog.=) aggregate_name;
    IF found_id IS NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'undefined_object',
            MESSAGE = pg_catalog.format('aggregate "%s" does not exist', aggregate_name),
            HINT = 'SELECT name FROM pipeline.aggregates lists the aggregates you own.';
    END IF;
    RETURN found_id;
END
$$;
COMMENT ON FUNCTION pipeline.aggregate_id(text) IS
    'the id of an aggregate you own, or an error naming it';
REVOKE ALL ON FUNCTION pipeline.aggregate_id(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.aggregate_id(text) TO PUBLIC;

-- Schema and name of an aggregate's output: the option output, else the
-- aggregate's name beside the table it reads
CREATE FUNCTION pipeline.aggregate_output_name(name text, output text, beside regclass)
RETURNS text[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    parts text[] := CASE WHEN output IS NULL THEN ARRAY[name] ELSE pg_catalog.parse_ident(output) END;
BEGIN
    IF pg_catalog.cardinality(parts) OPERATOR(pg_catalog.=) 1 THEN
        RETURN ARRAY[(SELECT n.nspname::text FROM pg_catalog.pg_class c
                        JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
                       WHERE c.oid OPERATOR(pg_catalog.=) beside)] OPERATOR(pg_catalog.||) parts;
    ELSIF pg_catalog.cardinality(parts) OPERATOR(pg_catalog.<>) 2 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_name',
            MESSAGE = pg_catalog.format('invalid output table name "%s"', output),
            HINT = 'Name a table, optionally with its schema, for example ''reports.daily_sales''.';
    END IF;
    RETURN parts;
END
$$;
COMMENT ON FUNCTION pipeline.aggregate_output_name(text, text, regclass) IS
    'schema and name of an aggregate''s output table: the option output, else the aggregate''s name beside the given table';
REVOKE ALL ON FUNCTION pipeline.aggregate_output_name(text, text, regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.aggregate_output_name(text, text, regclass) TO PUBLIC;

-- The output table (finished values) and the state table of an aggregate
CREATE FUNCTION pipeline.create_aggregate_tables(
    name text, output_table text, state_table text, column_names text[],
    column_kinds text[], column_types text[], state_types text[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    output_columns text := '';
    state_columns text := '';
    keys text := '';
BEGIN
    FOR i IN 1 .. pg_catalog.cardinality(column_names) LOOP
        output_columns := output_columns OPERATOR(pg_catalog.||) CASE WHEN i OPERATOR(pg_catalog.>) 1 THEN ', ' ELSE '' END
            OPERATOR(pg_catalog.||) pg_catalog.quote_ident(column_names[i]) OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) column_types[i];
        state_columns := state_columns OPERATOR(pg_catalog.||) pg_catalog.quote_ident(column_names[i])
            OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) state_types[i] OPERATOR(pg_catalog.||) ', ';
        IF column_kinds[i] OPERATOR(pg_catalog.=) 'key' THEN
            keys := keys OPERATOR(pg_catalog.||) CASE WHEN keys OPERATOR(pg_catalog.=) '' THEN '' ELSE ', ' END
                OPERATOR(pg_catalog.||) pg_catalog.quote_ident(column_names[i]);
        END IF;
    END LOOP;
    -- rows are rewritten in place each batch: room on the page keeps the updates HOT
    EXECUTE pg_catalog.format('CREATE TABLE %s (%s) WITH (fillfactor = 50)', output_table, output_columns);
    EXECUTE pg_catalog.format('CREATE UNIQUE INDEX ON %s (%s) NULLS NOT DISTINCT', output_table, keys);
    EXECUTE pg_catalog.format('COMMENT ON TABLE %s IS %L', output_table,
        pg_catalog.format('output of aggregate %s, kept current by pg_pipeline: one row per group', name));
    EXECUTE pg_catalog.format('CREATE TABLE %s (%s __rows bigint NOT NULL, __group bigint NOT NULL) WITH (fillfactor = 50)',
        state_table, state_columns);
    EXECUTE pg_catalog.format('CREATE UNIQUE INDEX ON %s (%s) NULLS NOT DISTINCT', state_table, keys);
    EXECUTE pg_catalog.format('CREATE INDEX ON %s (__group)', state_table);
    EXECUTE pg_catalog.format('COMMENT ON TABLE %s IS %L', state_table,
        pg_catalog.format('transition states of aggregate %s, one row per group; written by pg_pipeline only', name));
END
$$;
COMMENT ON FUNCTION pipeline.create_aggregate_tables(text, text, text, text[], text[], text[], text[]) IS
    'creates the output and state tables of an aggregate; used by pipeline.create_aggregate and pipeline.create_rollup';
REVOKE ALL ON FUNCTION pipeline.create_aggregate_tables(text, text, text, text[], text[], text[], text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.create_aggregate_tables(text, text, text, text[], text[], text[], text[]) TO PUBLIC;

CREATE FUNCTION pipeline.create_aggregate(
    name text,
    query text,
    options jsonb DEFAULT '{}',
    search_path text DEFAULT pg_catalog.current_setting('search_path'))
RETURNS regclass
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d record;
    new_id bigint;
    output_parts text[];
    output_table text;
    state_table text;
    event text;
    window_pane text;
    window_size interval;
    window_columns text := '';
    allowed_lateness interval;
    time_key text;
    time_key_type text;
    late_table text;
    i_count bigint;
BEGIN
    IF name IS NULL OR pg_catalog.btrim(name) OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'aggregate name must not be empty',
            HINT = 'Give the aggregate a name, for example ''daily_sales''.';
    END IF;
    IF query IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'the query of an aggregate must not be null',
            HINT = 'Write SELECT keys, aggregates FROM table GROUP BY keys.';
    END IF;
    PERFORM pipeline.check_kafka_settings(options, ARRAY['output', 'window', 'allowed_lateness', 'time_key']);
    IF EXISTS (SELECT FROM pipeline.aggregates a WHERE a.name OPERATOR(pg_catalog.=) create_aggregate.name) THEN
        RAISE EXCEPTION USING ERRCODE = 'duplicate_object',
            MESSAGE = pg_catalog.format('aggregate "%s" already exists', name),
            HINT = 'Drop it first with pipeline.drop_aggregate, or choose another name.';
    END IF;

    d := pipeline.aggregate_describe(query, search_path);
    IF options ? 'window' THEN
        window_pane := options->'window'->>'pane';
        IF pg_catalog.jsonb_typeof(options->'window') OPERATOR(pg_catalog.<>) 'object'
           OR window_pane IS NULL OR NOT (options->'window') ? 'size'
           OR (SELECT pg_catalog.count(*) FROM pg_catalog.jsonb_object_keys(options->'window')) OPERATOR(pg_catalog.<>) 2 THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = 'option "window" must name the pane key and the window size',
                HINT = 'For example ''{"window": {"pane": "pane", "size": "5 minutes"}}'', with pane a key such as date_bin(''10 seconds'', ts, ''2000-01-01'') AS pane.';
        END IF;
        IF (SELECT pg_catalog.count(*) FROM ROWS FROM (pg_catalog.unnest(d.column_names), pg_catalog.unnest(d.column_kinds),
                                                       pg_catalog.unnest(d.column_types)) AS c(n, k, t)
             WHERE c.n OPERATOR(pg_catalog.=) window_pane AND c.k OPERATOR(pg_catalog.=) 'key'
               AND c.t OPERATOR(pg_catalog.=) ANY (ARRAY['timestamp with time zone', 'timestamp without time zone', 'date'])) OPERATOR(pg_catalog.=) 0 THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = pg_catalog.format('pane "%s" is not a time key of the query', window_pane),
                HINT = 'Group by the pane start, for example date_bin(''10 seconds'', ts, ''2000-01-01'') AS pane, and name it in the option window.';
        END IF;
        BEGIN
            window_size := (options->'window'->>'size')::interval;
        EXCEPTION WHEN OTHERS THEN
            window_size := NULL;
        END;
        IF window_size IS NULL OR window_size OPERATOR(pg_catalog.<=) '0'::interval THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = pg_catalog.format('invalid window size "%s"', options->'window'->>'size'),
                HINT = 'Give a positive interval, for example ''5 minutes''.';
        END IF;
    END IF;
    IF options ? 'time_key' AND NOT options ? 'allowed_lateness' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'option "time_key" goes with option "allowed_lateness"',
            HINT = 'For example ''{"allowed_lateness": "10 minutes", "time_key": "minute"}''.';
    END IF;
    IF options ? 'allowed_lateness' THEN
        BEGIN
            allowed_lateness := (options->>'allowed_lateness')::interval;
        EXCEPTION WHEN OTHERS THEN
            allowed_lateness := NULL;
        END;
        IF allowed_lateness IS NULL OR allowed_lateness OPERATOR(pg_catalog.<) '0'::interval THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = pg_catalog.format('invalid allowed_lateness "%s"', options->>'allowed_lateness'),
                HINT = 'Give an interval of zero or more, for example ''10 minutes''.';
        END IF;
        -- the time key: named, or else the query's only time key
        SELECT pg_catalog.min(c.n), pg_catalog.min(c.t), pg_catalog.count(*)
          INTO time_key, time_key_type, i_count
          FROM ROWS FROM (pg_catalog.unnest(d.column_names), pg_catalog.unnest(d.column_kinds),
                          pg_catalog.unnest(d.column_types)) AS c(n, k, t)
         WHERE c.k OPERATOR(pg_catalog.=) 'key'
           AND c.t OPERATOR(pg_catalog.=) ANY (ARRAY['timestamp with time zone', 'timestamp without time zone', 'date'])
           AND (NOT options ? 'time_key' OR c.n OPERATOR(pg_catalog.=) (options->>'time_key'));
        IF i_count OPERATOR(pg_catalog.<>) 1 THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = CASE WHEN options ? 'time_key'
                               THEN pg_catalog.format('time_key "%s" is not a time key of the query', options->>'time_key')
                               WHEN i_count OPERATOR(pg_catalog.=) 0 THEN 'allowed_lateness needs a time key in the query'
                               ELSE 'the query has several time keys' END,
                HINT = 'Group by a time bucket such as date_trunc(''minute'', ts) AS minute, and name it with the option time_key if there are several.';
        END IF;
        RAISE NOTICE USING
            MESSAGE = 'allowed_lateness applies to rows folded from Kafka sources that keep no rows',
            HINT = 'Rows inserted into the table always merge into their bucket; create the Kafka source with {"store_rows": false}.';
    END IF;
    IF NOT pg_catalog.has_table_privilege(d.source, 'TRIGGER') THEN
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
            MESSAGE = pg_catalog.format('permission denied to watch table %s', d.source::regclass),
            HINT = 'An aggregate follows its table with triggers: its owner must grant you TRIGGER on it.';
    END IF;

    output_parts := pipeline.aggregate_output_name(name, options->>'output', d.source);
    output_table := pg_catalog.quote_ident(output_parts[1]) OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(output_parts[2]);
    state_table := pg_catalog.quote_ident(output_parts[1]) OPERATOR(pg_catalog.||) '.'
        OPERATOR(pg_catalog.||) pg_catalog.quote_ident(output_parts[2] OPERATOR(pg_catalog.||) '_state');

    FOR i IN 1 .. pg_catalog.cardinality(d.column_names) LOOP
        IF d.column_names[i] IS DISTINCT FROM window_pane THEN
            window_columns := window_columns OPERATOR(pg_catalog.||) CASE WHEN window_columns OPERATOR(pg_catalog.=) '' THEN '' ELSE ', ' END
                OPERATOR(pg_catalog.||) pg_catalog.quote_ident(d.column_names[i]) OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) d.column_types[i];
        END IF;
    END LOOP;
    PERFORM pipeline.create_aggregate_tables(name, output_table, state_table, d.column_names,
        d.column_kinds, d.column_types, d.state_types);
    IF allowed_lateness IS NOT NULL THEN
        -- the latest time key is read from the states at each batch
        EXECUTE pg_catalog.format('CREATE INDEX ON %s (%I)', state_table, time_key);
        late_table := pg_catalog.quote_ident(output_parts[1]) OPERATOR(pg_catalog.||) '.'
            OPERATOR(pg_catalog.||) pg_catalog.quote_ident(output_parts[2] OPERATOR(pg_catalog.||) '_late');
        EXECUTE pg_catalog.format('CREATE TABLE %s (late_at timestamptz NOT NULL DEFAULT pg_catalog.now(), %I %s, event jsonb NOT NULL)',
            late_table, time_key, time_key_type);
        EXECUTE pg_catalog.format('COMMENT ON TABLE %s IS %L', late_table,
            pg_catalog.format('events that came later than allowed_lateness %s for aggregate %s', allowed_lateness, name));
    END IF;

    INSERT INTO pipeline.aggregates (name, query, source, output, state_table, column_names,
        column_exprs, key_columns, where_clause, search_path, window_pane, window_size,
        time_key, allowed_lateness, late_table)
    VALUES (name, query, d.source, output_table::regclass, state_table::regclass, d.column_names,
        d.column_exprs,
        (SELECT pg_catalog.array_agg(k OPERATOR(pg_catalog.=) 'key' ORDER BY n)
           FROM pg_catalog.unnest(d.column_kinds) WITH ORDINALITY AS t(k, n)),
        d.where_clause, d.internal_search_path, window_pane, window_size,
        time_key, allowed_lateness, late_table::regclass)
    RETURNING id INTO new_id;

    -- a sliding window is read from the panes: <output>_window(end) and the view <output>_live
    IF window_pane IS NOT NULL THEN
        EXECUTE pg_catalog.format(
            'CREATE FUNCTION %s(window_end timestamptz DEFAULT pg_catalog.now()) RETURNS TABLE (%s) '
            'LANGUAGE sql STABLE AS %L',
            pg_catalog.quote_ident(output_parts[1]) OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(output_parts[2] OPERATOR(pg_catalog.||) '_window'),
            window_columns,
            pg_catalog.format('SELECT * FROM pipeline.aggregate_window(%s, window_end) AS w(%s)', new_id, window_columns));
        EXECUTE pg_catalog.format('CREATE VIEW %s AS SELECT * FROM %s()',
            pg_catalog.quote_ident(output_parts[1]) OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(output_parts[2] OPERATOR(pg_catalog.||) '_live'),
            pg_catalog.quote_ident(output_parts[1]) OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(output_parts[2] OPERATOR(pg_catalog.||) '_window'));
    END IF;

    -- the triggers lock the table while they are created: no write falls between them and the backfill
    FOREACH event IN ARRAY ARRAY['insert', 'update', 'delete', 'truncate'] LOOP
        EXECUTE pg_catalog.format('CREATE TRIGGER %I AFTER %s ON %s %s FOR EACH STATEMENT '
                                  'EXECUTE FUNCTION pipeline.aggregate_trigger(%L, %L)',
            'pipeline_aggregate_' OPERATOR(pg_catalog.||) new_id OPERATOR(pg_catalog.||) '_' OPERATOR(pg_catalog.||) event,
            pg_catalog.upper(event), d.source::regclass,
            CASE event WHEN 'insert' THEN 'REFERENCING NEW TABLE AS pipeline_new'
                       WHEN 'update' THEN 'REFERENCING OLD TABLE AS pipeline_old NEW TABLE AS pipeline_new'
                       WHEN 'delete' THEN 'REFERENCING OLD TABLE AS pipeline_old'
                       ELSE '' END,
            new_id, (CURRENT_USER)::regrole::oid);
    END LOOP;
    PERFORM pipeline.aggregate_backfill(new_id, (CURRENT_USER)::regrole::oid);
    RETURN output_table::regclass;
END
$$;
COMMENT ON FUNCTION pipeline.create_aggregate(text, text, jsonb, text) IS
    'creates a continuous aggregate: an output table with one row per group of the query, filled from the table''s rows and kept current as rows arrive; returns the output table';
REVOKE ALL ON FUNCTION pipeline.create_aggregate(text, text, jsonb, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.create_aggregate(text, text, jsonb, text) TO PUBLIC;

CREATE FUNCTION pipeline.aggregate_describe_rollup(
    base_state regclass,
    base_keys text[],
    keys text,
    search_path text,
    OUT column_names text[],
    OUT column_exprs text[],
    OUT column_types text[])
RETURNS record
LANGUAGE C STRICT VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pipeline_aggregate_describe_rollup';
COMMENT ON FUNCTION pipeline.aggregate_describe_rollup(regclass, text[], text, text) IS
    'checks the keys of a rollup (expressions over its aggregate''s keys) and returns them as stored';
REVOKE ALL ON FUNCTION pipeline.aggregate_describe_rollup(regclass, text[], text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.aggregate_describe_rollup(regclass, text[], text, text) TO PUBLIC;

CREATE FUNCTION pipeline.aggregate_rollup_recompute(aggregate_id bigint)
RETURNS SETOF record
LANGUAGE C STRICT STABLE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pipeline_aggregate_rollup_recompute';
COMMENT ON FUNCTION pipeline.aggregate_rollup_recompute(bigint) IS
    'a rollup''s groups recomputed from all of its aggregate''s states; used by pipeline.check_aggregate';
REVOKE ALL ON FUNCTION pipeline.aggregate_rollup_recompute(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.aggregate_rollup_recompute(bigint) TO PUBLIC;

CREATE FUNCTION pipeline.create_rollup(
    name text,
    aggregate text,
    keys text,
    options jsonb DEFAULT '{}',
    search_path text DEFAULT pg_catalog.current_setting('search_path'))
RETURNS regclass
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    base pipeline.aggregates;
    d record;
    new_id bigint;
    output_parts text[];
    output_table text;
    state_table text;
    base_columns record;
BEGIN
    IF name IS NULL OR pg_catalog.btrim(name) OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'rollup name must not be empty',
            HINT = 'Give the rollup a name, for example ''daily_sales''.';
    END IF;
    IF keys IS NULL OR pg_catalog.btrim(keys) OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'the keys of a rollup must not be empty',
            HINT = 'List its keys as expressions over the aggregate''s keys, for example: store_id, date_trunc(''day'', hour) AS day.';
    END IF;
    PERFORM pipeline.check_kafka_settings(options, ARRAY['output']);
    IF EXISTS (SELECT FROM pipeline.aggregates a WHERE a.name OPERATOR(pg_catalog.=) create_rollup.name) THEN
        RAISE EXCEPTION USING ERRCODE = 'duplicate_object',
            MESSAGE = pg_catalog.format('aggregate "%s" already exists', name),
            HINT = 'Drop it first with pipeline.drop_aggregate, or choose another name.';
    END IF;
    SELECT * INTO base FROM pipeline.aggregates g WHERE g.id OPERATOR(pg_catalog.=) pipeline.aggregate_id(aggregate);
    IF base.rollup_of IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'feature_not_supported',
            MESSAGE = pg_catalog.format('aggregate "%s" is itself a rollup', aggregate),
            HINT = 'Roll up its aggregate instead, with the coarser keys.';
    END IF;
    IF base.owner OPERATOR(pg_catalog.<>) (CURRENT_USER)::regrole THEN
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
            MESSAGE = pg_catalog.format('only the owner of aggregate "%s" can roll it up', aggregate),
            HINT = pg_catalog.format('Create the rollup as role %s.', base.owner);
    END IF;

    d := pipeline.aggregate_describe_rollup(base.state_table,
        (SELECT pg_catalog.array_agg(c.n ORDER BY c.i) FROM ROWS FROM (pg_catalog.unnest(base.column_names),
            pg_catalog.unnest(base.key_columns)) WITH ORDINALITY AS c(n, k, i) WHERE c.k),
        keys, search_path);
    -- every aggregate of the base, in its order, with its result and state types
    SELECT pg_catalog.array_agg(c.n ORDER BY c.i) AS names, pg_catalog.array_agg(c.e ORDER BY c.i) AS exprs,
           pg_catalog.array_agg(pg_catalog.format_type(o.atttypid, o.atttypmod) ORDER BY c.i) AS types,
           pg_catalog.array_agg(pg_catalog.format_type(st.atttypid, st.atttypmod) ORDER BY c.i) AS state_types
      INTO base_columns
      FROM ROWS FROM (pg_catalog.unnest(base.column_names), pg_catalog.unnest(base.column_exprs),
                      pg_catalog.unnest(base.key_columns)) WITH ORDINALITY AS c(n, e, k, i)
      JOIN pg_catalog.pg_attribute o ON o.attrelid OPERATOR(pg_catalog.=) base.output AND o.attname OPERATOR(pg_catalog.=) c.n
      JOIN pg_catalog.pg_attribute st ON st.attrelid OPERATOR(pg_catalog.=) base.state_table AND st.attname OPERATOR(pg_catalog.=) c.n
     WHERE NOT c.k;
    IF EXISTS (SELECT FROM pg_catalog.unnest(d.column_names) k WHERE k OPERATOR(pg_catalog.=) ANY (base_columns.names)) THEN
        RAISE EXCEPTION USING ERRCODE = 'duplicate_column',
            MESSAGE = 'a key of the rollup has the name of an aggregate column',
            HINT = pg_catalog.format('The rollup keeps the columns %s; name its keys otherwise.', pg_catalog.array_to_string(base_columns.names, ', '));
    END IF;

    output_parts := pipeline.aggregate_output_name(name, options->>'output', base.output);
    output_table := pg_catalog.quote_ident(output_parts[1]) OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(output_parts[2]);
    state_table := pg_catalog.quote_ident(output_parts[1]) OPERATOR(pg_catalog.||) '.'
        OPERATOR(pg_catalog.||) pg_catalog.quote_ident(output_parts[2] OPERATOR(pg_catalog.||) '_state');
    PERFORM pipeline.create_aggregate_tables(name, output_table, state_table,
        d.column_names OPERATOR(pg_catalog.||) base_columns.names,
        pg_catalog.array_fill('key'::text, ARRAY[pg_catalog.cardinality(d.column_names)])
            OPERATOR(pg_catalog.||) pg_catalog.array_fill('aggregate'::text, ARRAY[pg_catalog.cardinality(base_columns.names)]),
        d.column_types OPERATOR(pg_catalog.||) base_columns.types,
        d.column_types OPERATOR(pg_catalog.||) base_columns.state_types);

    -- the rollup reads the base's states: its source is the base's state table
    INSERT INTO pipeline.aggregates (name, query, source, output, state_table, column_names,
        column_exprs, key_columns, where_clause, search_path, rollup_of)
    VALUES (name, pg_catalog.format('rollup of %s by %s', aggregate, keys), base.state_table,
        output_table::regclass, state_table::regclass, d.column_names OPERATOR(pg_catalog.||) base_columns.names,
        d.column_exprs OPERATOR(pg_catalog.||) base_columns.exprs,
        pg_catalog.array_fill(true, ARRAY[pg_catalog.cardinality(d.column_names)])
            OPERATOR(pg_catalog.||) pg_catalog.array_fill(false, ARRAY[pg_catalog.cardinality(base_columns.names)]),
        NULL, base.search_path, base.id)
    RETURNING id INTO new_id;
    PERFORM pipeline.aggregate_backfill(new_id, (CURRENT_USER)::regrole::oid);
    RETURN output_table::regclass;
END
$$;
COMMENT ON FUNCTION pipeline.create_rollup(text, text, text, jsonb, text) IS
    'creates a rollup of an aggregate (hourly -> daily): the same aggregates over coarser keys, kept current by combining the aggregate''s states, never its finished values; returns the output table';
REVOKE ALL ON FUNCTION pipeline.create_rollup(text, text, text, jsonb, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.create_rollup(text, text, text, jsonb, text) TO PUBLIC;

CREATE FUNCTION pipeline.drop_aggregate(name text, keep_output boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a pipeline.aggregates;
    event text;
BEGIN
    SELECT * INTO a FROM pipeline.aggregates g WHERE g.id OPERATOR(pg_catalog.=) pipeline.aggregate_id(drop_aggregate.name);
    IF EXISTS (SELECT FROM pipeline.aggregates g WHERE g.rollup_of OPERATOR(pg_catalog.=) a.id) THEN
        RAISE EXCEPTION USING ERRCODE = 'dependent_objects_still_exist',
            MESSAGE = pg_catalog.format('aggregate "%s" has rollups', name),
            HINT = pg_catalog.format('Drop them first: %s.', (SELECT pg_catalog.string_agg(g.name, ', ' ORDER BY g.name)
                                                               FROM pipeline.aggregates g WHERE g.rollup_of OPERATOR(pg_catalog.=) a.id));
    END IF;
    -- the tables may be gone already (dropped by hand); rollups have no triggers
    IF a.rollup_of IS NULL AND EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) a.source) THEN
        FOREACH event IN ARRAY ARRAY['insert', 'update', 'delete', 'truncate'] LOOP
            EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS %I ON %s',
                'pipeline_aggregate_' OPERATOR(pg_catalog.||) a.id OPERATOR(pg_catalog.||) '_' OPERATOR(pg_catalog.||) event, a.source);
        END LOOP;
    END IF;
    DELETE FROM pipeline.aggregates g WHERE g.id OPERATOR(pg_catalog.=) a.id;
    -- a window's function and view are named after the output table
    IF a.window_pane IS NOT NULL AND EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) a.output) THEN
        EXECUTE pg_catalog.format('DROP FUNCTION IF EXISTS %s(timestamptz) CASCADE',
            (SELECT pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname OPERATOR(pg_catalog.||) '_window')
               FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
              WHERE c.oid OPERATOR(pg_catalog.=) a.output));
    END IF;
    IF a.late_table IS NOT NULL AND NOT keep_output
       AND EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) a.late_table) THEN
        EXECUTE pg_catalog.format('DROP TABLE %s', a.late_table);
    END IF;
    IF EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) a.state_table) THEN
        EXECUTE pg_catalog.format('DROP TABLE %s', a.state_table);
    END IF;
    IF NOT keep_output AND EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) a.output) THEN
        EXECUTE pg_catalog.format('DROP TABLE %s', a.output);
    END IF;
END
$$;
COMMENT ON FUNCTION pipeline.drop_aggregate(text, boolean) IS
    'drops an aggregate, its triggers and its states, and its output table unless keep_output';
REVOKE ALL ON FUNCTION pipeline.drop_aggregate(text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.drop_aggregate(text, boolean) TO PUBLIC;

CREATE FUNCTION pipeline.rebuild_aggregate(name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a pipeline.aggregates;
    r pipeline.aggregates;
BEGIN
    SELECT * INTO a FROM pipeline.aggregates g WHERE g.id OPERATOR(pg_catalog.=) pipeline.aggregate_id(rebuild_aggregate.name);
    -- rows a Kafka source did not keep cannot be read again
    IF EXISTS (SELECT FROM pipeline.kafka_sources k WHERE k.target OPERATOR(pg_catalog.=) a.source AND NOT k.store_rows) THEN
        RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
            MESSAGE = pg_catalog.format('aggregate "%s" is fed by a Kafka source that keeps no rows', a.name),
            HINT = 'Its events cannot be read again: to recompute it, create a new aggregate and replay the topic into it with pipeline.reset_kafka_source.';
    END IF;
    -- writers wait for the rebuild; readers keep seeing the old output until it commits
    EXECUTE pg_catalog.format('LOCK TABLE %s IN SHARE MODE', a.source);
    EXECUTE pg_catalog.format('DELETE FROM %s', a.state_table);
    EXECUTE pg_catalog.format('DELETE FROM %s', a.output);
    -- the backfill feeds the rollups, which start empty too
    FOR r IN SELECT * FROM pipeline.aggregates g WHERE g.rollup_of OPERATOR(pg_catalog.=) a.id LOOP
        EXECUTE pg_catalog.format('DELETE FROM %s', r.state_table);
        EXECUTE pg_catalog.format('DELETE FROM %s', r.output);
    END LOOP;
    PERFORM pipeline.aggregate_backfill(a.id, a.owner::oid);
END
$$;
COMMENT ON FUNCTION pipeline.rebuild_aggregate(text) IS
    'recomputes an aggregate from every row of its table; readers see the old output until it commits';
REVOKE ALL ON FUNCTION pipeline.rebuild_aggregate(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.rebuild_aggregate(text) TO PUBLIC;

CREATE FUNCTION pipeline.check_aggregate(name text)
RETURNS TABLE (group_key jsonb, stored jsonb, recomputed jsonb)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a pipeline.aggregates;
    fresh text := '';
    keys text := '';
    group_by text := '';
    differs text := '';
    key_object text := '';
    key_exprs text := '';
    key_refs text := '';
    column_type regtype;
    column_name text;
    fresh_query text;
BEGIN
    SELECT * INTO a FROM pipeline.aggregates g WHERE g.id OPERATOR(pg_catalog.=) pipeline.aggregate_id(check_aggregate.name);
    -- rows a Kafka source did not keep cannot be read again
    IF EXISTS (SELECT FROM pipeline.kafka_sources k WHERE k.target OPERATOR(pg_catalog.=) a.source AND NOT k.store_rows) THEN
        RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
            MESSAGE = pg_catalog.format('aggregate "%s" is fed by a Kafka source that keeps no rows', a.name),
            HINT = 'Its events cannot be read again: to recompute it, create a new aggregate and replay the topic into it with pipeline.reset_kafka_source.';
    END IF;
    FOR i IN 1 .. pg_catalog.cardinality(a.column_names) LOOP
        column_name := pg_catalog.quote_ident(a.column_names[i]);
        fresh := fresh OPERATOR(pg_catalog.||) a.column_exprs[i] OPERATOR(pg_catalog.||) ' AS ' OPERATOR(pg_catalog.||) column_name OPERATOR(pg_catalog.||) ', ';
        IF a.key_columns[i] THEN
            keys := keys OPERATOR(pg_catalog.||) CASE WHEN keys OPERATOR(pg_catalog.=) '' THEN '' ELSE ', ' END OPERATOR(pg_catalog.||) column_name;
            group_by := group_by OPERATOR(pg_catalog.||) CASE WHEN group_by OPERATOR(pg_catalog.=) '' THEN '' ELSE ', ' END OPERATOR(pg_catalog.||) i;
            key_object := key_object OPERATOR(pg_catalog.||) pg_catalog.format(', %L, COALESCE(f.%s, s.%s)', a.column_names[i], column_name, column_name);
            key_exprs := key_exprs OPERATOR(pg_catalog.||) pg_catalog.format(', (%s)', a.column_exprs[i]);
            key_refs := key_refs OPERATOR(pg_catalog.||) ', o.' OPERATOR(pg_catalog.||) column_name;
            differs := differs OPERATOR(pg_catalog.||) pg_catalog.format(' OR f.%s IS DISTINCT FROM s.%s', column_name, column_name);
        ELSE
            SELECT t.atttypid::regtype INTO column_type FROM pg_catalog.pg_attribute t
             WHERE t.attrelid OPERATOR(pg_catalog.=) a.output AND t.attname OPERATOR(pg_catalog.=) a.column_names[i];
            IF column_type IN ('real'::regtype, 'double precision'::regtype) THEN
                -- folding adds floats in another order: equal within 1e-9, relatively
                differs := differs OPERATOR(pg_catalog.||) pg_catalog.format(
                    ' OR NOT (f.%1$s IS NOT DISTINCT FROM s.%1$s OR pg_catalog.abs(f.%1$s - s.%1$s) <= 1e-9 * GREATEST(pg_catalog.abs(f.%1$s), pg_catalog.abs(s.%1$s)))',
                    column_name);
            ELSE
                differs := differs OPERATOR(pg_catalog.||) pg_catalog.format(' OR f.%s IS DISTINCT FROM s.%s', column_name, column_name);
            END IF;
        END IF;
    END LOOP;
    IF a.rollup_of IS NULL THEN
        -- the aggregate's query over its table
        fresh_query := pg_catalog.format('SELECT %s pg_catalog.hash_record_extended(ROW(%s), 0) AS __group FROM %s src WHERE %s GROUP BY %s',
            fresh, pg_catalog.substr(key_exprs, 3), a.source, COALESCE(a.where_clause, 'true'), group_by);
    ELSE
        -- a rollup: all of its base's states combined afresh
        fresh_query := pg_catalog.format('SELECT r.*, pg_catalog.hash_record_extended(ROW(%s), 0) AS __group '
                                         'FROM pipeline.aggregate_rollup_recompute(%s) AS r(%s, __rows bigint)',
            pg_catalog.replace(pg_catalog.substr(key_refs, 3), 'o.', 'r.'), a.id,
            (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(t.attname) OPERATOR(pg_catalog.||) ' '
                                          OPERATOR(pg_catalog.||) pg_catalog.format_type(t.atttypid, t.atttypmod), ', ' ORDER BY c.n)
               FROM pg_catalog.unnest(a.column_names) WITH ORDINALITY AS c(name, n)
               JOIN pg_catalog.pg_attribute t ON t.attrelid OPERATOR(pg_catalog.=) a.output AND t.attname OPERATOR(pg_catalog.=) c.name));
    END IF;
    RETURN QUERY EXECUTE pg_catalog.format(
        'WITH f AS (%s), '
        ' s AS (SELECT o.*, pg_catalog.hash_record_extended(ROW(%s), 0) AS __group FROM %s o) '
        'SELECT pg_catalog.jsonb_build_object(%s), pg_catalog.to_jsonb(s) OPERATOR(pg_catalog.-) ''__group'', '
        '       pg_catalog.to_jsonb(f) OPERATOR(pg_catalog.-) ''__group'' OPERATOR(pg_catalog.-) ''__rows'' '
        '  FROM f FULL JOIN s ON f.__group OPERATOR(pg_catalog.=) s.__group '
        ' WHERE f.__group IS NULL OR s.__group IS NULL %s',
        fresh_query, pg_catalog.substr(key_refs, 3), a.output, pg_catalog.substr(key_object, 3), differs);
END
$$;
COMMENT ON FUNCTION pipeline.check_aggregate(text) IS
    'compares an aggregate''s output table with its query recomputed from scratch; returns the groups that differ (none when consistent)';
REVOKE ALL ON FUNCTION pipeline.check_aggregate(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.check_aggregate(text) TO PUBLIC;

-------------------------------------------------------------------------------
-- Schedules
-------------------------------------------------------------------------------

CREATE FUNCTION pipeline.next_runs(
    schedule text,
    count integer DEFAULT 5,
    after timestamptz DEFAULT pg_catalog.now(),
    time_zone text DEFAULT 'UTC')
RETURNS SETOF timestamptz
LANGUAGE C STRICT STABLE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pipeline_next_runs';
COMMENT ON FUNCTION pipeline.next_runs(text, integer, timestamptz, text) IS
    'checks a schedule (cron with optional seconds, @every <interval>, @once <timestamp>, @daily ...) and returns its next fire times after a time, in a time zone';
REVOKE ALL ON FUNCTION pipeline.next_runs(text, integer, timestamptz, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.next_runs(text, integer, timestamptz, text) TO PUBLIC;

-------------------------------------------------------------------------------
-- Jobs
--
-- The supervisor of each database enqueues each occurrence of a job in
-- pipeline.job_runs (committed before anything runs) and starts a background
-- worker per run, connected as the job's owner.  The worker marks the run
-- succeeded in the same transaction as the command's work.
-------------------------------------------------------------------------------

CREATE SEQUENCE pipeline.job_id_seq;
CREATE SEQUENCE pipeline.job_run_id_seq;

CREATE TABLE pipeline.jobs (
    id bigint PRIMARY KEY DEFAULT pg_catalog.nextval('pipeline.job_id_seq'),
    name text NOT NULL UNIQUE,
    owner regrole NOT NULL DEFAULT (CURRENT_USER)::regrole,
    schedule text,
    command text NOT NULL,
    time_zone text NOT NULL DEFAULT 'UTC',
    enabled boolean NOT NULL DEFAULT true,
    timeout interval,
    max_attempts integer NOT NULL DEFAULT 1,
    retry_delay interval NOT NULL DEFAULT '10 seconds',
    max_retry_delay interval NOT NULL DEFAULT '1 hour',
    depends_on bigint[] NOT NULL DEFAULT '{}',
    atomic boolean NOT NULL DEFAULT true,
    overlap text NOT NULL DEFAULT 'skip',
    catch_up text NOT NULL DEFAULT 'latest',
    catch_up_window interval NOT NULL DEFAULT '1 hour',
    last_scheduled_for timestamptz,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CHECK (max_attempts BETWEEN 1 AND 100),
    CHECK (overlap OPERATOR(pg_catalog.=) ANY (ARRAY['skip', 'queue_one', 'allow'])),
    CHECK (catch_up OPERATOR(pg_catalog.=) ANY (ARRAY['none', 'latest', 'all'])),
    CHECK (timeout OPERATOR(pg_catalog.>) '0'::interval AND timeout OPERATOR(pg_catalog.<=) '24 days'::interval),
    CHECK (retry_delay OPERATOR(pg_catalog.>=) '0'::interval AND retry_delay OPERATOR(pg_catalog.<=) '1 day'::interval),
    CHECK (max_retry_delay OPERATOR(pg_catalog.>=) '0'::interval AND max_retry_delay OPERATOR(pg_catalog.<=) '7 days'::interval),
    CHECK (catch_up_window OPERATOR(pg_catalog.>) '0'::interval AND catch_up_window OPERATOR(pg_catalog.<=) '1 year'::interval)
);
COMMENT ON TABLE pipeline.jobs IS
    'scheduled jobs: a SQL command run on a schedule, as its owner; change them with the pipeline.*job functions';
CREATE TRIGGER jobs_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON pipeline.jobs
    FOR EACH STATEMENT EXECUTE FUNCTION pipeline.catalog_changed();

-- Every schedule and time zone the scheduler reads was checked when written;
-- @once is stored as an absolute UTC time, read in the job's time zone
CREATE FUNCTION pipeline.job_check()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    once_text text;
    saved_zone text := pg_catalog.current_setting('TimeZone');
BEGIN
    PERFORM pipeline.next_runs('@hourly', 1, pg_catalog.now(), NEW.time_zone);
    IF NEW.schedule IS NOT NULL THEN
        once_text := pg_catalog.substring(NEW.schedule, '^\s*@[oO][nN][cC][eE]\s+(.*)$');
        IF once_text IS NOT NULL THEN
            PERFORM pg_catalog.set_config('TimeZone', NEW.time_zone, true);
            NEW.schedule := '@once ' OPERATOR(pg_catalog.||)
                pg_catalog.to_char(once_text::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');
            PERFORM pg_catalog.set_config('TimeZone', saved_zone, true);
        END IF;
        PERFORM pipeline.next_runs(NEW.schedule, 1, pg_catalog.now(), NEW.time_zone);
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION pipeline.job_check() IS
    'trigger: checks a job''s schedule and time zone as it is written, and stores @once as an absolute time';
REVOKE ALL ON FUNCTION pipeline.job_check() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.job_check() TO PUBLIC;
CREATE TRIGGER jobs_checked
    BEFORE INSERT OR UPDATE OF schedule, time_zone ON pipeline.jobs
    FOR EACH ROW EXECUTE FUNCTION pipeline.job_check();

CREATE TABLE pipeline.job_runs (
    id bigint PRIMARY KEY DEFAULT pg_catalog.nextval('pipeline.job_run_id_seq'),
    job_id bigint NOT NULL REFERENCES pipeline.jobs (id) ON DELETE CASCADE,
    owner regrole NOT NULL,
    scheduled_for timestamptz NOT NULL,
    attempt integer NOT NULL,
    due_at timestamptz NOT NULL,
    trigger text NOT NULL,
    state text NOT NULL,
    pid integer,
    started_at timestamptz,
    finished_at timestamptz,
    sqlstate text,
    error text,
    UNIQUE (job_id, scheduled_for, attempt),
    CHECK (trigger OPERATOR(pg_catalog.=) ANY (ARRAY['schedule', 'manual', 'retry', 'upstream', 'backfill'])),
    CHECK (state OPERATOR(pg_catalog.=) ANY (ARRAY['queued', 'starting', 'running', 'succeeded', 'failed',
                                                   'timed_out', 'crashed', 'skipped', 'upstream_failed']))
);
CREATE INDEX ON pipeline.job_runs (state, due_at) WHERE state OPERATOR(pg_catalog.=) ANY (ARRAY['queued', 'starting', 'running']);
COMMENT ON TABLE pipeline.job_runs IS
    'one row per occurrence and attempt of a job, written before it starts: state, timings and error';
CREATE TRIGGER job_runs_changed
    AFTER INSERT ON pipeline.job_runs
    FOR EACH STATEMENT EXECUTE FUNCTION pipeline.catalog_changed();

ALTER TABLE pipeline.jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE pipeline.job_runs ENABLE ROW LEVEL SECURITY;
CREATE POLICY owner_only ON pipeline.jobs
    USING (pg_catalog.pg_has_role(owner, 'USAGE'))
    WITH CHECK (owner OPERATOR(pg_catalog.=) (CURRENT_USER)::regrole);
CREATE POLICY owner_only ON pipeline.job_runs
    USING (pg_catalog.pg_has_role(owner, 'USAGE'))
    WITH CHECK (pg_catalog.pg_has_role(owner, 'USAGE')
                AND EXISTS (SELECT FROM pipeline.jobs j WHERE j.id OPERATOR(pg_catalog.=) job_id
                                                          AND j.owner OPERATOR(pg_catalog.=) owner));
REVOKE ALL ON pipeline.jobs, pipeline.job_runs FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON pipeline.jobs TO PUBLIC;
GRANT SELECT, INSERT, UPDATE ON pipeline.job_runs TO PUBLIC;
REVOKE ALL ON SEQUENCE pipeline.job_id_seq, pipeline.job_run_id_seq FROM PUBLIC;
GRANT USAGE ON SEQUENCE pipeline.job_id_seq, pipeline.job_run_id_seq TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('pipeline.jobs', '');
SELECT pg_catalog.pg_extension_config_dump('pipeline.job_id_seq', '');

-- Raises the error for an unknown job (others' jobs are invisible too)
CREATE FUNCTION pipeline.job_id(job_name text)
RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found_id bigint;
BEGIN
    SELECT j.id INTO found_id FROM pipeline.jobs j WHERE j.name OPERATOR(pg_catalog.=) job_name;
    IF found_id IS NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'undefined_object',
            MESSAGE = pg_catalog.format('job "%s" does not exist', job_name),
            HINT = 'SELECT name FROM pipeline.jobs lists the jobs you own.';
    END IF;
    RETURN found_id;
END
$$;
COMMENT ON FUNCTION pipeline.job_id(text) IS
    'the id of a job you own, or an error naming it';
REVOKE ALL ON FUNCTION pipeline.job_id(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.job_id(text) TO PUBLIC;

CREATE FUNCTION pipeline.schedule_job(name text, schedule text, command text, options jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_id bigint;
    key text;
    option_interval interval;
    upstream bigint[] := '{}';
BEGIN
    IF name IS NULL OR pg_catalog.btrim(name) OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'job name must not be empty',
            HINT = 'Give the job a name, for example ''nightly-import''.';
    END IF;
    IF command IS NULL OR pg_catalog.btrim(command) OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'job command must not be empty',
            HINT = 'Give the SQL to run, for example ''CALL refresh_reports()''.';
    END IF;
    IF options IS NULL OR pg_catalog.jsonb_typeof(options) OPERATOR(pg_catalog.<>) 'object' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'options must be a JSON object',
            HINT = 'For example ''{"time_zone": "Europe/Paris", "max_attempts": 3}''.';
    END IF;
    FOR key IN SELECT pg_catalog.jsonb_object_keys(options) LOOP
        IF NOT key OPERATOR(pg_catalog.=) ANY (ARRAY['time_zone', 'timeout', 'max_attempts', 'retry_delay', 'max_retry_delay', 'enabled', 'depends_on', 'atomic', 'overlap', 'catch_up', 'catch_up_window']) THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = pg_catalog.format('unknown option "%s"', key),
                HINT = 'Valid options are: time_zone, timeout, max_attempts, retry_delay, max_retry_delay, enabled, depends_on, atomic, overlap, catch_up, catch_up_window.';
        END IF;
    END LOOP;
    -- a job of a graph runs when all the jobs it depends on succeeded for the same time
    IF options ? 'depends_on' THEN
        IF pg_catalog.jsonb_typeof(options->'depends_on') OPERATOR(pg_catalog.<>) 'array'
           OR pg_catalog.jsonb_array_length(options->'depends_on') OPERATOR(pg_catalog.=) 0 THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = 'option "depends_on" must list job names',
                HINT = 'For example ''{"depends_on": ["import", "clean"]}''.';
        END IF;
        SELECT pg_catalog.array_agg(pipeline.job_id(u.name) ORDER BY u.n) INTO upstream
          FROM pg_catalog.jsonb_array_elements_text(options->'depends_on') WITH ORDINALITY AS u(name, n);
        IF schedule IS NOT NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = 'a job cannot have both a schedule and depends_on',
                HINT = 'Schedule the first jobs of the graph; the others run when the jobs they depend on succeed.';
        END IF;
    END IF;
    -- checks the schedule and the time zone, with their own messages
    IF schedule IS NOT NULL THEN
        PERFORM pipeline.next_runs(schedule, 1, pg_catalog.now(), COALESCE(options->>'time_zone', 'UTC'));
    ELSIF options ? 'time_zone' THEN
        PERFORM pipeline.next_runs('@hourly', 1, pg_catalog.now(), options->>'time_zone');
    END IF;
    IF options ? 'overlap' AND NOT (options->>'overlap') OPERATOR(pg_catalog.=) ANY (ARRAY['skip', 'queue_one', 'allow']) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format('unknown overlap policy "%s"', options->>'overlap'),
            HINT = 'When a run is due while the previous one still runs: skip (record it skipped), queue_one (keep one waiting) or allow (run both).';
    END IF;
    IF options ? 'catch_up' AND NOT (options->>'catch_up') OPERATOR(pg_catalog.=) ANY (ARRAY['none', 'latest', 'all']) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format('unknown catch-up policy "%s"', options->>'catch_up'),
            HINT = 'For occurrences missed while the server was down: none, latest (run the last one) or all (run each within catch_up_window).';
    END IF;
    FOREACH key IN ARRAY ARRAY['timeout', 'retry_delay', 'max_retry_delay', 'catch_up_window'] LOOP
        IF options ? key THEN
            BEGIN
                option_interval := (options->>key)::interval;
            EXCEPTION WHEN OTHERS THEN
                option_interval := NULL;
            END;
            IF option_interval IS NULL OR option_interval OPERATOR(pg_catalog.<=) '0'::interval THEN
                RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                    MESSAGE = pg_catalog.format('invalid %s "%s"', key, options->>key),
                    HINT = 'Give a positive interval, for example ''30 seconds''.';
            END IF;
            IF option_interval OPERATOR(pg_catalog.>) (CASE key WHEN 'timeout' THEN '24 days' WHEN 'retry_delay' THEN '1 day'
                                                          WHEN 'max_retry_delay' THEN '7 days' ELSE '1 year' END)::interval THEN
                RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                    MESSAGE = pg_catalog.format('%s "%s" is too long', key, options->>key),
                    HINT = 'The limits are: timeout 24 days, retry_delay 1 day, max_retry_delay 7 days, catch_up_window 1 year.';
            END IF;
        END IF;
    END LOOP;
    IF (options ? 'atomic' AND pg_catalog.jsonb_typeof(options->'atomic') OPERATOR(pg_catalog.<>) 'boolean')
       OR (options ? 'enabled' AND pg_catalog.jsonb_typeof(options->'enabled') OPERATOR(pg_catalog.<>) 'boolean') THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'options "atomic" and "enabled" must be true or false',
            HINT = 'atomic false runs the command outside one transaction, so CALL of a procedure that commits works.';
    END IF;
    IF options ? 'max_attempts' AND (CASE WHEN (options->>'max_attempts') ~ '^[0-9]{1,3}$'
                                     THEN (options->>'max_attempts')::int NOT BETWEEN 1 AND 100 ELSE true END) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format('invalid max_attempts %s', options->'max_attempts'),
            HINT = 'Use a number of attempts from 1 (no retry) to 100.';
    END IF;
    IF NOT (SELECT r.rolcanlogin FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER) THEN
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
            MESSAGE = pg_catalog.format('role "%s" cannot log in', CURRENT_USER),
            HINT = 'Jobs run in a background worker connected as their owner: give the role LOGIN, or create the job as a role that has it.';
    END IF;
    IF (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER)
       AND NOT pg_catalog.current_setting('pg_pipeline.allow_superuser_jobs')::boolean THEN
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
            MESSAGE = 'jobs owned by a superuser are not allowed',
            HINT = 'Create the job as an ordinary role with the rights it needs, or set pg_pipeline.allow_superuser_jobs = on.';
    END IF;
    BEGIN
        INSERT INTO pipeline.jobs (name, schedule, command, time_zone, timeout, max_attempts, retry_delay,
                                   max_retry_delay, enabled, depends_on, atomic, overlap, catch_up,
                                   catch_up_window, last_scheduled_for)
        VALUES (name, schedule, command, COALESCE(options->>'time_zone', 'UTC'), (options->>'timeout')::interval,
                COALESCE((options->>'max_attempts')::int, 1), COALESCE((options->>'retry_delay')::interval, '10 seconds'),
                COALESCE((options->>'max_retry_delay')::interval, '1 hour'), COALESCE((options->>'enabled')::boolean, true),
                upstream, COALESCE((options->>'atomic')::boolean, true), COALESCE(options->>'overlap', 'skip'),
                COALESCE(options->>'catch_up', 'latest'), COALESCE((options->>'catch_up_window')::interval, '1 hour'),
                pg_catalog.now())
        RETURNING id INTO new_id;
    EXCEPTION WHEN unique_violation THEN
        RAISE EXCEPTION USING ERRCODE = 'duplicate_object',
            MESSAGE = pg_catalog.format('job "%s" already exists', name),
            HINT = 'Drop it first with pipeline.unschedule_job, or choose another name.';
    END;
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION pipeline.schedule_job(text, text, text, jsonb) IS
    'creates a job: the command runs on the schedule (NULL: only by pipeline.run_job) in a background worker, as you; returns its id';
REVOKE ALL ON FUNCTION pipeline.schedule_job(text, text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.schedule_job(text, text, text, jsonb) TO PUBLIC;

CREATE FUNCTION pipeline.unschedule_job(name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job bigint := pipeline.job_id(unschedule_job.name);
BEGIN
    IF EXISTS (SELECT FROM pipeline.jobs j WHERE job OPERATOR(pg_catalog.=) ANY (j.depends_on)) THEN
        RAISE EXCEPTION USING ERRCODE = 'dependent_objects_still_exist',
            MESSAGE = pg_catalog.format('jobs depend on job "%s"', name),
            HINT = pg_catalog.format('Unschedule them first: %s.', (SELECT pg_catalog.string_agg(j.name, ', ' ORDER BY j.name)
                                                                   FROM pipeline.jobs j WHERE job OPERATOR(pg_catalog.=) ANY (j.depends_on)));
    END IF;
    DELETE FROM pipeline.jobs j WHERE j.id OPERATOR(pg_catalog.=) job;
END
$$;
COMMENT ON FUNCTION pipeline.unschedule_job(text) IS
    'drops a job and its history; a run in progress finishes';
REVOKE ALL ON FUNCTION pipeline.unschedule_job(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.unschedule_job(text) TO PUBLIC;

CREATE FUNCTION pipeline.pause_job(name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE pipeline.jobs j SET enabled = false WHERE j.id OPERATOR(pg_catalog.=) pipeline.job_id(pause_job.name);
END
$$;
COMMENT ON FUNCTION pipeline.pause_job(text) IS
    'stops scheduling a job (runs already queued still run)';
REVOKE ALL ON FUNCTION pipeline.pause_job(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.pause_job(text) TO PUBLIC;

CREATE FUNCTION pipeline.resume_job(name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- occurrences missed while paused are not caught up
    UPDATE pipeline.jobs j SET enabled = true, last_scheduled_for = pg_catalog.now()
     WHERE j.id OPERATOR(pg_catalog.=) pipeline.job_id(resume_job.name);
END
$$;
COMMENT ON FUNCTION pipeline.resume_job(text) IS
    'schedules a paused job again, from now on';
REVOKE ALL ON FUNCTION pipeline.resume_job(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.resume_job(text) TO PUBLIC;

CREATE FUNCTION pipeline.run_job(name text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job pipeline.jobs;
    new_id bigint;
BEGIN
    SELECT * INTO job FROM pipeline.jobs j WHERE j.id OPERATOR(pg_catalog.=) pipeline.job_id(run_job.name);
    INSERT INTO pipeline.job_runs (job_id, owner, scheduled_for, attempt, due_at, trigger, state)
    VALUES (job.id, job.owner, pg_catalog.clock_timestamp(), 1, pg_catalog.clock_timestamp(), 'manual', 'queued')
    RETURNING id INTO new_id;
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION pipeline.run_job(text) IS
    'runs a job now, in its background worker, once this transaction commits; returns the run''s id in pipeline.job_runs';
REVOKE ALL ON FUNCTION pipeline.run_job(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.run_job(text) TO PUBLIC;

CREATE FUNCTION pipeline.rerun_job(name text, scheduled_for timestamptz)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job pipeline.jobs;
    new_id bigint;
BEGIN
    SELECT * INTO job FROM pipeline.jobs j WHERE j.id OPERATOR(pg_catalog.=) pipeline.job_id(rerun_job.name);
    -- a new attempt for the same logical time; the jobs after it follow when it succeeds
    INSERT INTO pipeline.job_runs (job_id, owner, scheduled_for, attempt, due_at, trigger, state)
    SELECT job.id, job.owner, rerun_job.scheduled_for,
           COALESCE((SELECT pg_catalog.max(r.attempt) FROM pipeline.job_runs r
                      WHERE r.job_id OPERATOR(pg_catalog.=) job.id AND r.scheduled_for OPERATOR(pg_catalog.=) rerun_job.scheduled_for), 0)
             OPERATOR(pg_catalog.+) 1,
           pg_catalog.clock_timestamp(), 'manual', 'queued'
    RETURNING id INTO new_id;
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION pipeline.rerun_job(text, timestamptz) IS
    'runs a job again for a logical time (for example after fixing a failed task of a graph); the jobs that depend on it follow when it succeeds';
REVOKE ALL ON FUNCTION pipeline.rerun_job(text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.rerun_job(text, timestamptz) TO PUBLIC;

CREATE FUNCTION pipeline.backfill_job(name text, from_time timestamptz, to_time timestamptz)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job pipeline.jobs;
    queued integer;
BEGIN
    SELECT * INTO job FROM pipeline.jobs j WHERE j.id OPERATOR(pg_catalog.=) pipeline.job_id(backfill_job.name);
    IF job.schedule IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format('job "%s" has no schedule to backfill', name),
            HINT = 'Backfill the scheduled job at the start of its graph; the jobs that depend on it follow.';
    END IF;
    IF from_time IS NULL OR to_time IS NULL OR to_time OPERATOR(pg_catalog.<) from_time THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'invalid backfill range',
            HINT = 'Give a start and an end, the end not before the start.';
    END IF;
    -- each occurrence in the range, oldest first, one run at a time
    INSERT INTO pipeline.job_runs (job_id, owner, scheduled_for, attempt, due_at, trigger, state)
    SELECT job.id, job.owner, o.at,
           COALESCE((SELECT pg_catalog.max(r.attempt) FROM pipeline.job_runs r
                      WHERE r.job_id OPERATOR(pg_catalog.=) job.id AND r.scheduled_for OPERATOR(pg_catalog.=) o.at), 0)
             OPERATOR(pg_catalog.+) 1,
           pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => o.n OPERATOR(pg_catalog./) 1000.0),
           'backfill', 'queued'
      FROM pipeline.next_runs(job.schedule, 10000, from_time OPERATOR(pg_catalog.-) interval '1 microsecond', job.time_zone)
           WITH ORDINALITY AS o(at, n)
     WHERE o.at OPERATOR(pg_catalog.<=) to_time;
    GET DIAGNOSTICS queued = ROW_COUNT;
    RETURN queued;
END
$$;
COMMENT ON FUNCTION pipeline.backfill_job(text, timestamptz, timestamptz) IS
    'queues a run of a scheduled job for each of its occurrences in a time range, oldest first, with that time as its logical time; the jobs that depend on it follow each; returns the number queued';
REVOKE ALL ON FUNCTION pipeline.backfill_job(text, timestamptz, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.backfill_job(text, timestamptz, timestamptz) TO PUBLIC;

-- After a run ends: start the jobs of its graph that now have all they need,
-- or, when it failed for good, mark the jobs after it as upstream_failed
CREATE FUNCTION pipeline.job_run_ended(run_id bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    run pipeline.job_runs;
BEGIN
    SELECT * INTO run FROM pipeline.job_runs r WHERE r.id OPERATOR(pg_catalog.=) run_id;
    IF run.state OPERATOR(pg_catalog.=) 'succeeded' THEN
        -- two dependencies ending together: the second to lock sees the first's success
        PERFORM FROM pipeline.jobs d WHERE run.job_id OPERATOR(pg_catalog.=) ANY (d.depends_on)
          ORDER BY d.id FOR UPDATE;
        -- a new attempt, also after an earlier upstream_failed or a run on older data (a rerun)
        INSERT INTO pipeline.job_runs (job_id, owner, scheduled_for, attempt, due_at, trigger, state)
        SELECT d.id, d.owner, run.scheduled_for,
               COALESCE((SELECT pg_catalog.max(r.attempt) FROM pipeline.job_runs r
                          WHERE r.job_id OPERATOR(pg_catalog.=) d.id AND r.scheduled_for OPERATOR(pg_catalog.=) run.scheduled_for), 0)
                 OPERATOR(pg_catalog.+) 1,
               pg_catalog.clock_timestamp(), 'upstream', 'queued'
          FROM pipeline.jobs d
         WHERE run.job_id OPERATOR(pg_catalog.=) ANY (d.depends_on) AND d.enabled
           AND NOT EXISTS (SELECT FROM pg_catalog.unnest(d.depends_on) AS u(job_id)
                            WHERE NOT EXISTS (SELECT FROM pipeline.job_runs r
                                               WHERE r.job_id OPERATOR(pg_catalog.=) u.job_id
                                                 AND r.scheduled_for OPERATOR(pg_catalog.=) run.scheduled_for
                                                 AND r.state OPERATOR(pg_catalog.=) 'succeeded'))
           AND NOT EXISTS (SELECT FROM pipeline.job_runs r
                            WHERE r.job_id OPERATOR(pg_catalog.=) d.id AND r.scheduled_for OPERATOR(pg_catalog.=) run.scheduled_for
                              AND r.state OPERATOR(pg_catalog.=) ANY (ARRAY['queued', 'starting', 'running']))
        ON CONFLICT DO NOTHING;
    ELSIF run.state OPERATOR(pg_catalog.=) ANY (ARRAY['failed', 'timed_out', 'crashed'])
          AND NOT EXISTS (SELECT FROM pipeline.job_runs r WHERE r.job_id OPERATOR(pg_catalog.=) run.job_id
                             AND r.scheduled_for OPERATOR(pg_catalog.=) run.scheduled_for
                             AND r.attempt OPERATOR(pg_catalog.>) run.attempt) THEN
        WITH RECURSIVE downstream (id, owner) AS (
            SELECT d.id, d.owner FROM pipeline.jobs d WHERE run.job_id OPERATOR(pg_catalog.=) ANY (d.depends_on)
            UNION
            SELECT d.id, d.owner FROM pipeline.jobs d JOIN downstream x ON x.id OPERATOR(pg_catalog.=) ANY (d.depends_on))
        INSERT INTO pipeline.job_runs (job_id, owner, scheduled_for, attempt, due_at, trigger, state, finished_at, error)
        SELECT x.id, x.owner, run.scheduled_for, 1, pg_catalog.clock_timestamp(), 'upstream', 'upstream_failed',
               pg_catalog.clock_timestamp(), pg_catalog.format('job %s failed', (SELECT j.name FROM pipeline.jobs j WHERE j.id OPERATOR(pg_catalog.=) run.job_id))
          FROM downstream x
        ON CONFLICT DO NOTHING;
    END IF;
END
$$;
COMMENT ON FUNCTION pipeline.job_run_ended(bigint) IS
    'after a job run ends: queues the jobs of its graph whose dependencies all succeeded for that time, or marks them upstream_failed; called by the job workers and the supervisor';
REVOKE ALL ON FUNCTION pipeline.job_run_ended(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.job_run_ended(bigint) TO PUBLIC;

CREATE FUNCTION pipeline.run_context(
    OUT job text,
    OUT run_id bigint,
    OUT scheduled_for timestamptz,
    OUT attempt integer)
RETURNS record
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.current_setting('pipeline.job', true),
           NULLIF(pg_catalog.current_setting('pipeline.run_id', true), '')::bigint,
           NULLIF(pg_catalog.current_setting('pipeline.scheduled_for', true), '')::timestamptz,
           NULLIF(pg_catalog.current_setting('pipeline.attempt', true), '')::integer
$$;
COMMENT ON FUNCTION pipeline.run_context() IS
    'inside a job''s command: the job, the run, the logical time it was scheduled for (use it to compute the day to process) and the attempt; NULLs elsewhere';
REVOKE ALL ON FUNCTION pipeline.run_context() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.run_context() TO PUBLIC;

CREATE VIEW pipeline.job_status WITH (security_invoker = true) AS
SELECT j.name AS job,
       j.owner,
       j.schedule,
       (SELECT pg_catalog.array_agg(u.name ORDER BY u.name) FROM pipeline.jobs u
         WHERE u.id OPERATOR(pg_catalog.=) ANY (j.depends_on)) AS depends_on,
       j.time_zone,
       j.enabled,
       CASE WHEN j.enabled AND j.schedule IS NOT NULL
            THEN (SELECT n FROM pipeline.next_runs(j.schedule, 1, GREATEST(j.last_scheduled_for, pg_catalog.now()), j.time_zone) n)
       END AS next_run,
       r.state AS last_state,
       r.scheduled_for AS last_scheduled_for,
       r.started_at AS last_started_at,
       r.finished_at AS last_finished_at,
       r.error AS last_error
  FROM pipeline.jobs j
  LEFT JOIN LATERAL (SELECT * FROM pipeline.job_runs x WHERE x.job_id OPERATOR(pg_catalog.=) j.id
                      ORDER BY x.id DESC LIMIT 1) r ON true;
COMMENT ON VIEW pipeline.job_status IS
    'one row per job: its schedule, next run, and its latest run''s state, times and error';
REVOKE ALL ON pipeline.job_status FROM PUBLIC;
GRANT SELECT ON pipeline.job_status TO PUBLIC;

-- Table sources
--
-- A table source imports rows from any relation (foreign tables included)
-- into a target table, in batches.  Each batch's rows, its rejected rows and
-- the new watermark commit together, so a crash between batches neither
-- loses nor doubles a row: the next run resumes at the watermark.

CREATE SEQUENCE pipeline.table_source_id_seq;
CREATE SEQUENCE pipeline.table_source_run_id_seq;
CREATE SEQUENCE pipeline.table_dead_letter_id_seq;

CREATE TABLE pipeline.table_sources (
    id bigint PRIMARY KEY DEFAULT pg_catalog.nextval('pipeline.table_source_id_seq'),
    name text NOT NULL UNIQUE,
    owner regrole NOT NULL DEFAULT (CURRENT_USER)::regrole,
    source regclass NOT NULL,
    target regclass NOT NULL,
    mode text NOT NULL,
    watermark_column text,
    watermark_type text,
    key_columns text[],
    lookback interval NOT NULL DEFAULT '0',
    columns text[] NOT NULL,
    expressions text[] NOT NULL,    -- per column, SQL over the source row "src"
    filter text,                    -- SQL over "src": rows where it is not true are rejected
    search_path text NOT NULL,      -- for the expressions and the filter
    batch_size integer NOT NULL DEFAULT 100000,
    fetch_size integer,             -- rows per round trip reading a postgres_fdw source (NULL: see table_source_reader)
    watermark text,                 -- the last imported watermark value, as text
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CHECK (mode OPERATOR(pg_catalog.=) ANY (ARRAY['full', 'append', 'upsert'])),
    CHECK ((mode OPERATOR(pg_catalog.=) 'full') OPERATOR(pg_catalog.=) (watermark_column IS NULL)),
    CHECK ((mode OPERATOR(pg_catalog.=) 'upsert') OPERATOR(pg_catalog.=) (key_columns IS NOT NULL)),
    CHECK (batch_size BETWEEN 1 AND 1000000),
    CHECK (fetch_size BETWEEN 1 AND 1000000),
    CHECK (pg_catalog.cardinality(columns) OPERATOR(pg_catalog.=) pg_catalog.cardinality(expressions))
);
COMMENT ON TABLE pipeline.table_sources IS
    'table sources: which relation is imported into which table, how, and up to which watermark';

CREATE TABLE pipeline.table_source_runs (
    id bigint PRIMARY KEY DEFAULT pg_catalog.nextval('pipeline.table_source_run_id_seq'),
    source_id bigint NOT NULL REFERENCES pipeline.table_sources (id) ON DELETE CASCADE,
    owner regrole NOT NULL DEFAULT (CURRENT_USER)::regrole,
    state text NOT NULL DEFAULT 'running',
    started_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    finished_at timestamptz,
    batches integer NOT NULL DEFAULT 0,
    rows_imported bigint NOT NULL DEFAULT 0,
    rows_rejected bigint NOT NULL DEFAULT 0,
    watermark_from text,
    watermark_to text,
    error text,
    CHECK (state OPERATOR(pg_catalog.=) ANY (ARRAY['running', 'succeeded', 'failed']))
);
CREATE INDEX ON pipeline.table_source_runs (source_id, id);
COMMENT ON TABLE pipeline.table_source_runs IS
    'one row per run of a table source, updated with each committed batch';

CREATE TABLE pipeline.table_dead_letters (
    id bigint PRIMARY KEY DEFAULT pg_catalog.nextval('pipeline.table_dead_letter_id_seq'),
    source_id bigint NOT NULL,
    source_name text NOT NULL,
    owner regrole NOT NULL DEFAULT (CURRENT_USER)::regrole,
    "row" jsonb NOT NULL,
    error text NOT NULL,
    sqlstate text,
    failed_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE pipeline.table_dead_letters IS
    'rows a table source rejected (filter, type conversion, constraint), with the reason, stored with their batch';

ALTER TABLE pipeline.table_sources ENABLE ROW LEVEL SECURITY;
ALTER TABLE pipeline.table_source_runs ENABLE ROW LEVEL SECURITY;
ALTER TABLE pipeline.table_dead_letters ENABLE ROW LEVEL SECURITY;
CREATE POLICY owner_only ON pipeline.table_sources
    USING (pg_catalog.pg_has_role(owner, 'USAGE'))
    WITH CHECK (owner OPERATOR(pg_catalog.=) (CURRENT_USER)::regrole);
CREATE POLICY owner_only ON pipeline.table_source_runs
    USING (pg_catalog.pg_has_role(owner, 'USAGE'))
    -- rows only for one's own table_sources, as their owner
    WITH CHECK (pg_catalog.pg_has_role(owner, 'USAGE')
                AND EXISTS (SELECT FROM pipeline.table_sources p WHERE p.id OPERATOR(pg_catalog.=) source_id
                                                    AND p.owner OPERATOR(pg_catalog.=) owner));
CREATE POLICY owner_only ON pipeline.table_dead_letters
    USING (pg_catalog.pg_has_role(owner, 'USAGE'))
    -- rows only for one's own table_sources, as their owner
    WITH CHECK (pg_catalog.pg_has_role(owner, 'USAGE')
                AND EXISTS (SELECT FROM pipeline.table_sources p WHERE p.id OPERATOR(pg_catalog.=) source_id
                                                    AND p.owner OPERATOR(pg_catalog.=) owner));
REVOKE ALL ON pipeline.table_sources, pipeline.table_source_runs, pipeline.table_dead_letters FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON pipeline.table_sources, pipeline.table_source_runs TO PUBLIC;
GRANT SELECT, INSERT, DELETE ON pipeline.table_dead_letters TO PUBLIC;
REVOKE ALL ON SEQUENCE pipeline.table_source_id_seq, pipeline.table_source_run_id_seq,
                       pipeline.table_dead_letter_id_seq FROM PUBLIC;
GRANT USAGE ON SEQUENCE pipeline.table_source_id_seq, pipeline.table_source_run_id_seq,
                        pipeline.table_dead_letter_id_seq TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('pipeline.table_sources', '');
SELECT pg_catalog.pg_extension_config_dump('pipeline.table_source_runs', '');
SELECT pg_catalog.pg_extension_config_dump('pipeline.table_dead_letters', '');
SELECT pg_catalog.pg_extension_config_dump('pipeline.table_source_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('pipeline.table_source_run_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('pipeline.table_dead_letter_id_seq', '');

-- Raises the error for an unknown source (others' sources are invisible too)
CREATE FUNCTION pipeline.table_source_id(source_name text)
RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found_id bigint;
BEGIN
    SELECT s.id INTO found_id FROM pipeline.table_sources s WHERE s.name OPERATOR(pg_catalog.=) source_name;
    IF found_id IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'undefined_object',
            MESSAGE = pg_catalog.format('table source "%s" does not exist', source_name),
            HINT = 'SELECT name FROM pipeline.table_sources lists the table sources you own.';
    END IF;
    RETURN found_id;
END
$$;
COMMENT ON FUNCTION pipeline.table_source_id(text) IS 'the id of a table source you own, or an error';
REVOKE ALL ON FUNCTION pipeline.table_source_id(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.table_source_id(text) TO PUBLIC;

CREATE FUNCTION pipeline.create_table_source(
    name text,
    source regclass,
    target regclass,
    mode text DEFAULT 'append',
    options jsonb DEFAULT '{}',
    search_path text DEFAULT pg_catalog.current_setting('search_path'))
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    watermark_column text := options->>'watermark_column';
    watermark_type text;
    key_columns text[];
    target_columns text[];
    expressions text[];
    new_id bigint;
    c text;
    lookback_value interval;
    is_postgres_fdw boolean;
    fetch_rows integer;
BEGIN
    IF name IS NULL OR pg_catalog.btrim(name) OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'table source name must not be empty',
            HINT = 'Give the source a name, for example ''pos_import''.';
    END IF;
    IF source IS NULL OR target IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'a table source needs a source relation and a target table',
            HINT = 'For example pipeline.create_table_source(''pos_import'', ''pos.transactions'', ''sales'').';
    END IF;
    IF mode IS NULL OR NOT mode OPERATOR(pg_catalog.=) ANY (ARRAY['full', 'append', 'upsert']) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format('unknown mode "%s"', mode),
            HINT = 'Use full (replace the target''s rows), append (new rows by an increasing column) or upsert (changed rows by a last-modified column, by key).';
    END IF;
    PERFORM pipeline.check_kafka_settings(options, ARRAY['watermark_column', 'key', 'lookback',
        'columns', 'filter', 'batch_size', 'fetch_size']);
    IF (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) target) NOT IN ('r', 'p') THEN
        RAISE EXCEPTION USING ERRCODE = 'wrong_object_type',
            MESSAGE = pg_catalog.format('%s is not a table', target),
            HINT = 'A table source writes into a table or a partitioned table.';
    END IF;
    IF source OPERATOR(pg_catalog.=) target THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'a table source cannot import a table into itself',
            HINT = 'Name another target table.';
    END IF;
    IF NOT pg_catalog.has_table_privilege(source, 'SELECT') THEN
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
            MESSAGE = pg_catalog.format('permission denied for relation %s', source),
            HINT = 'A table source reads as the role that runs it: grant it SELECT on the source (and a user mapping for a foreign table).';
    END IF;
    IF NOT pg_catalog.has_table_privilege(target, CASE mode WHEN 'full' THEN 'INSERT,DELETE' WHEN 'upsert' THEN 'INSERT,UPDATE' ELSE 'INSERT' END) THEN
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
            MESSAGE = pg_catalog.format('permission denied for table %s', target),
            HINT = 'Grant INSERT on the target (and DELETE for mode full, UPDATE for mode upsert).';
    END IF;

    -- the watermark column: increasing (append) or last-modified (upsert)
    IF mode OPERATOR(pg_catalog.=) 'full' THEN
        IF watermark_column IS NOT NULL OR options ? 'key' OR options ? 'lookback' THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = 'mode full takes no watermark_column, key or lookback',
                HINT = 'Mode full replaces the target''s rows with the source''s at each run.';
        END IF;
    ELSE
        IF watermark_column IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = pg_catalog.format('mode %s needs the option watermark_column', mode),
                HINT = CASE mode WHEN 'append' THEN 'Name an increasing column of the source, for example ''{"watermark_column": "id"}''.'
                                 ELSE 'Name the source''s last-modified column, for example ''{"watermark_column": "updated_at", "key": ["id"]}''.' END;
        END IF;
        SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) INTO watermark_type
          FROM pg_catalog.pg_attribute a
         WHERE a.attrelid OPERATOR(pg_catalog.=) source AND a.attname OPERATOR(pg_catalog.=) watermark_column
           AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped;
        IF watermark_type IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'undefined_column',
                MESSAGE = pg_catalog.format('column "%s" of relation %s does not exist', watermark_column, source),
                HINT = 'Name a column of the source relation.';
        END IF;
    END IF;
    IF mode OPERATOR(pg_catalog.=) 'upsert' THEN
        IF pg_catalog.jsonb_typeof(options->'key') IS DISTINCT FROM 'array' OR pg_catalog.jsonb_array_length(options->'key') OPERATOR(pg_catalog.=) 0 THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = 'mode upsert needs the option key: the target columns that identify a row',
                HINT = 'For example ''{"watermark_column": "updated_at", "key": ["id"]}'', with a unique index on them in the target.';
        END IF;
        SELECT pg_catalog.array_agg(k ORDER BY n) INTO key_columns
          FROM pg_catalog.jsonb_array_elements_text(options->'key') WITH ORDINALITY AS e(k, n);
        -- ON CONFLICT needs a unique index on exactly these columns
        IF NOT (SELECT pg_catalog.count(*) OPERATOR(pg_catalog.>) 0 FROM (
            SELECT FROM pg_catalog.pg_index i
             WHERE i.indrelid OPERATOR(pg_catalog.=) target AND i.indisunique AND i.indpred IS NULL
               AND i.indexprs IS NULL
               AND (SELECT pg_catalog.array_agg(a.attname::text ORDER BY a.attname)
                      FROM pg_catalog.pg_attribute a
                     WHERE a.attrelid OPERATOR(pg_catalog.=) target
                       AND a.attnum OPERATOR(pg_catalog.=) ANY (i.indkey::int2[]))
                   OPERATOR(pg_catalog.=) (SELECT pg_catalog.array_agg(k ORDER BY k) FROM pg_catalog.unnest(key_columns) k)) AS matching) THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_object_definition',
                MESSAGE = pg_catalog.format('table %s has no unique index on (%s)', target, pg_catalog.array_to_string(key_columns, ', ')),
                HINT = 'Create one, for example a primary key: upserts find the row to update by it.';
        END IF;
    ELSIF options ? 'key' OR options ? 'lookback' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'options key and lookback are for mode upsert',
            HINT = 'Mode append never revisits rows: use mode upsert for rows that change.';
    END IF;

    IF options ? 'lookback' THEN
        BEGIN
            lookback_value := (options->>'lookback')::interval;
        EXCEPTION WHEN OTHERS THEN
            lookback_value := NULL;
        END;
        IF pg_catalog.jsonb_typeof(options->'lookback') OPERATOR(pg_catalog.<>) 'string'
           OR lookback_value IS NULL OR lookback_value OPERATOR(pg_catalog.<) '0'::interval THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = pg_catalog.format('invalid lookback %s', options->'lookback'),
                HINT = 'Give an interval, for example ''{"lookback": "5 minutes"}'': each run re-reads changes that far before the watermark.';
        END IF;
    END IF;
    -- fetch_size: rows per round trip reading a postgres_fdw foreign table
    -- (without it, each batch decides: see pipeline.table_source_reader)
    SELECT COALESCE(p.proname OPERATOR(pg_catalog.=) 'postgres_fdw_handler', false)
      INTO is_postgres_fdw
      FROM pg_catalog.pg_foreign_table ft
      JOIN pg_catalog.pg_foreign_server srv ON srv.oid OPERATOR(pg_catalog.=) ft.ftserver
      JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid OPERATOR(pg_catalog.=) srv.srvfdw
      LEFT JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) w.fdwhandler
     WHERE ft.ftrelid OPERATOR(pg_catalog.=) source;
    IF options ? 'fetch_size' THEN
        IF NOT COALESCE(is_postgres_fdw, false) THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = pg_catalog.format('option fetch_size is for postgres_fdw foreign tables, and %s is not one', source),
                HINT = 'Leave the option out.';
        END IF;
        IF NOT COALESCE((options->>'fetch_size') ~ '^[0-9]{1,7}$' AND (options->>'fetch_size')::int BETWEEN 1 AND 1000000, false) THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = pg_catalog.format('invalid fetch_size %s', options->'fetch_size'),
                HINT = 'Use a number of rows per round trip to the foreign server between 1 and 1000000, for example 10000.';
        END IF;
        fetch_rows := (options->>'fetch_size')::int;
    END IF;
    IF options ? 'filter' AND pg_catalog.jsonb_typeof(options->'filter') OPERATOR(pg_catalog.<>) 'string' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'option "filter" must be a SQL condition over the source row src',
            HINT = 'For example ''{"filter": "src.amount > 0"}'': rows where it is not true go to pipeline.table_dead_letters.';
    END IF;

    -- columns: {"target column": "SQL expression over src"}, default the same-named source columns
    IF options ? 'columns' THEN
        IF pg_catalog.jsonb_typeof(options->'columns') OPERATOR(pg_catalog.<>) 'object' THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = 'option "columns" must map target columns to SQL expressions over the source row src',
                HINT = 'For example ''{"columns": {"amount": "round(src.amount, 2)", "store_id": "src.store"}}''.';
        END IF;
        SELECT pg_catalog.array_agg(e.key ORDER BY e.key), pg_catalog.array_agg(e.value ORDER BY e.key)
          INTO target_columns, expressions
          FROM pg_catalog.jsonb_each_text(options->'columns') e;
    ELSE
        SELECT pg_catalog.array_agg(t.attname::text ORDER BY t.attnum),
               pg_catalog.array_agg('src.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(t.attname) ORDER BY t.attnum)
          INTO target_columns, expressions
          FROM pg_catalog.pg_attribute t
          JOIN pg_catalog.pg_attribute s ON s.attrelid OPERATOR(pg_catalog.=) source AND s.attname OPERATOR(pg_catalog.=) t.attname
                                        AND s.attnum OPERATOR(pg_catalog.>) 0 AND NOT s.attisdropped
         WHERE t.attrelid OPERATOR(pg_catalog.=) target AND t.attnum OPERATOR(pg_catalog.>) 0
           AND NOT t.attisdropped AND t.attgenerated OPERATOR(pg_catalog.=) '';
        IF target_columns IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = pg_catalog.format('%s and %s have no column name in common', source, target),
                HINT = 'Map the target''s columns with the option columns, for example ''{"columns": {"amount": "src.total"}}''.';
        END IF;
    END IF;
    FOREACH c IN ARRAY target_columns LOOP
        PERFORM pipeline.target_column_type(target, c);
    END LOOP;
    FOREACH c IN ARRAY COALESCE(key_columns, '{}') LOOP
        IF NOT c OPERATOR(pg_catalog.=) ANY (target_columns) THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = pg_catalog.format('key column "%s" is not imported', c),
                HINT = 'Every key column must be filled from the source.';
        END IF;
    END LOOP;

    -- expressions and filter are checked by planning one probe query with the caller's search_path
    IF pg_catalog.strpos(pg_catalog.array_to_string(expressions, ' ') OPERATOR(pg_catalog.||) COALESCE(options->>'filter', ''), ';')
       OPERATOR(pg_catalog.>) 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'column expressions and the filter must not contain semicolons',
            HINT = 'Give one SQL expression per column, over the source row src.';
    END IF;
    PERFORM pg_catalog.set_config('search_path', search_path, true);
    BEGIN
        EXECUTE pg_catalog.format('EXPLAIN SELECT %s FROM %s src WHERE %s',
            pg_catalog.array_to_string(expressions, ', '), source, COALESCE(options->>'filter', 'true'));
    EXCEPTION WHEN syntax_error_or_access_rule_violation OR data_exception OR undefined_function THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format('invalid column expression or filter: %s', SQLERRM),
            HINT = 'Write SQL expressions over the source row src, for example ''{"columns": {"amount": "round(src.amount, 2)"}, "filter": "src.amount > 0"}''.';
    END;
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);

    BEGIN
        INSERT INTO pipeline.table_sources (name, source, target, mode, watermark_column, watermark_type,
            key_columns, lookback, columns, expressions, filter, search_path, batch_size, fetch_size)
        VALUES (name, source, target, mode, watermark_column, watermark_type, key_columns,
            COALESCE(lookback_value, '0'), target_columns, expressions,
            options->>'filter', search_path, COALESCE((options->>'batch_size')::int, 100000), fetch_rows)
        RETURNING id INTO new_id;
    EXCEPTION WHEN unique_violation THEN
        RAISE EXCEPTION USING ERRCODE = 'duplicate_object',
            MESSAGE = pg_catalog.format('table source "%s" already exists', name),
            HINT = 'Drop it first with pipeline.drop_table_source, or choose another name.';
    END;
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION pipeline.create_table_source(text, regclass, regclass, text, jsonb, text) IS
    'creates a table source: pipeline.run_table_source imports the source relation into the target, in batches, exactly once; returns its id';
REVOKE ALL ON FUNCTION pipeline.create_table_source(text, regclass, regclass, text, jsonb, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.create_table_source(text, regclass, regclass, text, jsonb, text) TO PUBLIC;

CREATE FUNCTION pipeline.drop_table_source(name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM pipeline.table_sources s WHERE s.id OPERATOR(pg_catalog.=) pipeline.table_source_id(drop_table_source.name);
END
$$;
COMMENT ON FUNCTION pipeline.drop_table_source(text) IS
    'drops a table source and its run history (its dead letters and the imported rows stay)';
REVOKE ALL ON FUNCTION pipeline.drop_table_source(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.drop_table_source(text) TO PUBLIC;

CREATE FUNCTION pipeline.reset_table_source(name text, watermark text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET datestyle = 'ISO, YMD'
SET intervalstyle = 'iso_8601'
AS $$
DECLARE
    s pipeline.table_sources;
    stored text;
BEGIN
    SELECT * INTO s FROM pipeline.table_sources t
     WHERE t.id OPERATOR(pg_catalog.=) pipeline.table_source_id(reset_table_source.name) FOR UPDATE;
    IF watermark IS NOT NULL THEN
        IF s.mode OPERATOR(pg_catalog.=) 'full' THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = 'a table source in mode full has no watermark to set',
                HINT = 'Call pipeline.reset_table_source(name) without a watermark, or just run it.';
        END IF;
        BEGIN
            -- stored in a form every DateStyle reads back the same
            EXECUTE pg_catalog.format('SELECT %L::%s::text', watermark, s.watermark_type) INTO stored;
        EXCEPTION WHEN OTHERS THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = pg_catalog.format('invalid watermark "%s" for column "%s" of type %s', watermark, s.watermark_column, s.watermark_type),
                HINT = 'Give a value of the watermark column''s type: rows after it are imported by the next run.';
        END;
    END IF;
    UPDATE pipeline.table_sources t SET watermark = stored WHERE t.id OPERATOR(pg_catalog.=) s.id;
END
$$;
COMMENT ON FUNCTION pipeline.reset_table_source(text, text) IS
    'moves a table source''s watermark: NULL imports everything again at the next run, a value imports the rows after it';
REVOKE ALL ON FUNCTION pipeline.reset_table_source(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.reset_table_source(text, text) TO PUBLIC;

-- One batch of a run, in the caller's transaction: import the rows after the
-- watermark up to the batch's bound, reject the others to the dead letters,
-- advance the watermark (fenced: a concurrent run makes this one fail) and the
-- run's counters.  Returns whether more rows may be waiting.
-- What a batch of a postgres_fdw source reads: a temporary copy of the
-- foreign table's definition (no data) with a larger fetch_size, since
-- postgres_fdw reads 100 rows per round trip unless the table or server
-- says otherwise, and round trips are most of an import's time: the
-- source's fetch_size option, else 10000 when neither the table nor its
-- server sets one (decided at each batch, so a setting made later counts).
-- The copy reaches the same remote table through the same server and user
-- mapping; it is read only when the caller may SELECT from the source
-- itself.  NULL (read the source as it is) when there is nothing to change
-- or the copy cannot be made (no USAGE on the server, no TEMP on the
-- database, a security-restricted context, an option the wrapper refuses):
-- the plain read then works, or fails with the real reason.  The batch
-- drops the copy when it ends.
CREATE FUNCTION pipeline.table_source_reader(source regclass, fetch_size integer)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ddl text;
BEGIN
    IF NOT pg_catalog.has_table_privilege(source, 'SELECT') THEN
        RETURN NULL;
    END IF;
    IF fetch_size IS NULL THEN
        SELECT CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_options_to_table(ft.ftoptions OPERATOR(pg_catalog.||) srv.srvoptions) o
                                  WHERE o.option_name OPERATOR(pg_catalog.=) 'fetch_size')
                    THEN NULL ELSE 10000 END
          INTO fetch_size
          FROM pg_catalog.pg_foreign_table ft
          JOIN pg_catalog.pg_foreign_server srv ON srv.oid OPERATOR(pg_catalog.=) ft.ftserver
          JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid OPERATOR(pg_catalog.=) srv.srvfdw
          JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) w.fdwhandler
         WHERE ft.ftrelid OPERATOR(pg_catalog.=) source AND p.proname OPERATOR(pg_catalog.=) 'postgres_fdw_handler';
        IF fetch_size IS NULL THEN
            RETURN NULL;
        END IF;
    END IF;
    SELECT pg_catalog.format('CREATE FOREIGN TABLE pg_temp.pipeline_table_source_fetch (%s) SERVER %I OPTIONS (%s)',
               (SELECT pg_catalog.string_agg(pg_catalog.format('%I %s%s OPTIONS (column_name %L)',
                           a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod),
                           (SELECT pg_catalog.format(' COLLATE %I.%I', cn.nspname, co.collname)
                              FROM pg_catalog.pg_collation co
                              JOIN pg_catalog.pg_namespace cn ON cn.oid OPERATOR(pg_catalog.=) co.collnamespace
                             WHERE co.oid OPERATOR(pg_catalog.=) a.attcollation
                               AND co.oid OPERATOR(pg_catalog.<>) t.typcollation),
                           COALESCE((SELECT o.option_value FROM pg_catalog.pg_options_to_table(a.attfdwoptions) o
                                      WHERE o.option_name OPERATOR(pg_catalog.=) 'column_name'), a.attname)),
                       ', ' ORDER BY a.attnum)
                  FROM pg_catalog.pg_attribute a
                  JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) a.atttypid
                 WHERE a.attrelid OPERATOR(pg_catalog.=) source AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped),
               srv.srvname,
               (SELECT pg_catalog.string_agg(pg_catalog.format('%I %L', o.name, o.value), ', ')
                  FROM (SELECT x.option_name, x.option_value FROM pg_catalog.pg_options_to_table(ft.ftoptions) x
                         WHERE NOT x.option_name OPERATOR(pg_catalog.=) ANY (ARRAY['fetch_size', 'schema_name', 'table_name'])
                        UNION ALL
                        -- postgres_fdw's defaults are the local names, which the copy does not share
                        SELECT 'schema_name', COALESCE((SELECT x.option_value FROM pg_catalog.pg_options_to_table(ft.ftoptions) x
                                                         WHERE x.option_name OPERATOR(pg_catalog.=) 'schema_name'), n.nspname)
                        UNION ALL
                        SELECT 'table_name', COALESCE((SELECT x.option_value FROM pg_catalog.pg_options_to_table(ft.ftoptions) x
                                                        WHERE x.option_name OPERATOR(pg_catalog.=) 'table_name'), c.relname)
                        UNION ALL
                        SELECT 'fetch_size', fetch_size::text) AS o(name, value)))
      INTO ddl
      FROM pg_catalog.pg_foreign_table ft
      JOIN pg_catalog.pg_foreign_server srv ON srv.oid OPERATOR(pg_catalog.=) ft.ftserver
      JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) ft.ftrelid
      JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
     WHERE ft.ftrelid OPERATOR(pg_catalog.=) source;
    IF ddl IS NULL THEN
        RETURN NULL;
    END IF;
    BEGIN
        EXECUTE ddl;
    EXCEPTION WHEN OTHERS THEN
        RETURN NULL;
    END;
    RETURN 'pg_temp.pipeline_table_source_fetch';
END
$$;
COMMENT ON FUNCTION pipeline.table_source_reader(regclass, integer) IS
    'makes the temporary foreign table a table source''s batch reads a postgres_fdw source through, with a larger fetch_size; NULL to read the source as it is';
REVOKE ALL ON FUNCTION pipeline.table_source_reader(regclass, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.table_source_reader(regclass, integer) TO PUBLIC;

CREATE FUNCTION pipeline.table_source_batch(source_id bigint, run_id bigint, first_batch boolean)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET datestyle = 'ISO, YMD'
SET intervalstyle = 'iso_8601'
AS $$
DECLARE
    s pipeline.table_sources;
    read_from text;                 -- the source, or its copy with the source's fetch_size
    wm_col text;
    after_wm text;
    bound text;
    more_rows boolean := false;
    range_cond text;
    target_columns text;
    select_list text;
    filter_cond text;
    insert_sql text;
    conflict text := '';
    imported bigint := 0;
    rejected bigint := 0;
    imported_alone bigint := 0;
    filtered bigint;
    r record;
    err text;
    err_state text;
BEGIN
    SELECT * INTO s FROM pipeline.table_sources t WHERE t.id OPERATOR(pg_catalog.=) source_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'undefined_object',
            MESSAGE = pg_catalog.format('table source %s does not exist', source_id),
            HINT = 'It was dropped while it ran.';
    END IF;
    read_from := pipeline.table_source_reader(s.source, s.fetch_size);
    -- expressions, filter and names resolve as when the source was created
    PERFORM pg_catalog.set_config('search_path', s.search_path, true);
    read_from := COALESCE(read_from, s.source::text);
    filter_cond := COALESCE(s.filter, 'true');
    SELECT pg_catalog.string_agg(pg_catalog.quote_ident(c), ', ' ORDER BY n) INTO target_columns
      FROM pg_catalog.unnest(s.columns) WITH ORDINALITY AS x(c, n);
    select_list := pg_catalog.array_to_string(s.expressions, ', ');

    IF s.mode OPERATOR(pg_catalog.=) 'full' THEN
        range_cond := 'true';
        bound := pg_catalog.to_char(pg_catalog.now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');
        EXECUTE pg_catalog.format('DELETE FROM %s', s.target);
    ELSE
        wm_col := 'src.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(s.watermark_column);
        -- a run of an upsert source first re-reads lookback before the watermark:
        -- changes committed late at the source (re-applying the others is harmless)
        IF s.watermark IS NULL THEN
            after_wm := wm_col OPERATOR(pg_catalog.||) ' IS NOT NULL';
        ELSIF first_batch AND s.lookback OPERATOR(pg_catalog.>) '0'::interval THEN
            after_wm := pg_catalog.format('%s > (%L::%s - %L::interval)', wm_col, s.watermark, s.watermark_type, s.lookback);
        ELSE
            after_wm := pg_catalog.format('%s > %L::%s', wm_col, s.watermark, s.watermark_type);
        END IF;
        -- the batch ends at the batch_size-th value: rows sharing it are never
        -- split between batches.  Both queries return one row, and a foreign
        -- table's server answers them (ORDER BY/OFFSET/LIMIT, max are pushed down).
        EXECUTE pg_catalog.format('SELECT w::text FROM (SELECT %s AS w FROM %s src WHERE %s ORDER BY 1 OFFSET %s LIMIT 1) b',
                                  wm_col, read_from, after_wm, s.batch_size OPERATOR(pg_catalog.-) 1)
           INTO bound;
        more_rows := bound IS NOT NULL;
        IF NOT more_rows THEN
            EXECUTE pg_catalog.format('SELECT w::text FROM (SELECT %s AS w FROM %s src WHERE %s ORDER BY 1 DESC LIMIT 1) b',
                                      wm_col, read_from, after_wm)
               INTO bound;
        END IF;
        IF bound IS NULL THEN
            IF read_from OPERATOR(pg_catalog.=) 'pg_temp.pipeline_table_source_fetch' THEN
                DROP FOREIGN TABLE pg_temp.pipeline_table_source_fetch;
            END IF;
            RETURN false;
        END IF;
        -- the lookback re-read is one batch, up to the watermark at least, and
        -- the watermark never moves back
        IF s.watermark IS NOT NULL THEN
            EXECUTE pg_catalog.format('SELECT GREATEST(%L::%s, %L::%s)::text',
                                      bound, s.watermark_type, s.watermark, s.watermark_type) INTO bound;
        END IF;
        range_cond := pg_catalog.format('%s AND %s <= %L::%s', after_wm, wm_col, bound, s.watermark_type);
    END IF;

    IF s.mode OPERATOR(pg_catalog.=) 'upsert' THEN
        SELECT ' ON CONFLICT (' OPERATOR(pg_catalog.||) (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(k), ', ') FROM pg_catalog.unnest(s.key_columns) k)
               OPERATOR(pg_catalog.||) ') DO UPDATE SET '
               OPERATOR(pg_catalog.||) pg_catalog.string_agg(pg_catalog.format('%I = EXCLUDED.%I', c, c), ', ')
          INTO conflict
          FROM pg_catalog.unnest(s.columns) c WHERE NOT c OPERATOR(pg_catalog.=) ANY (s.key_columns);
        conflict := COALESCE(conflict, ' ON CONFLICT DO NOTHING');
    END IF;

    insert_sql := pg_catalog.format('INSERT INTO %s (%s) SELECT %s FROM %s src WHERE %s AND (%s)%s',
                                    s.target, target_columns, select_list, read_from, range_cond, filter_cond, conflict);
    BEGIN
        EXECUTE insert_sql;
        GET DIAGNOSTICS imported = ROW_COUNT;
    EXCEPTION WHEN data_exception OR integrity_constraint_violation THEN
        -- a bad row.  Check the batch row by row against a trigger-less copy of
        -- the target (types, defaults, NOT NULL, CHECK), each bad row to the dead
        -- letters, then store the good ones in one statement, so the target's
        -- triggers (aggregates, reports) fire once, not per row.
        imported := 0;
        EXECUTE pg_catalog.format('CREATE TEMP TABLE pipeline_checked_rows (LIKE %s INCLUDING DEFAULTS '
                                  'INCLUDING IDENTITY INCLUDING GENERATED INCLUDING CONSTRAINTS) ON COMMIT DROP', s.target);
        FOR r IN EXECUTE pg_catalog.format('SELECT src FROM %s src WHERE %s AND (%s)', read_from, range_cond, filter_cond) LOOP
            BEGIN
                EXECUTE pg_catalog.format('INSERT INTO pg_temp.pipeline_checked_rows (%s) SELECT %s FROM (SELECT ($1).*) src',
                                          target_columns, select_list) USING r.src;
            EXCEPTION WHEN data_exception OR integrity_constraint_violation THEN
                -- the target itself decides (its BEFORE triggers may fix the row)
                BEGIN
                    EXECUTE pg_catalog.format('INSERT INTO %s (%s) SELECT %s FROM (SELECT ($1).*) src%s',
                                              s.target, target_columns, select_list, conflict) USING r.src;
                    imported_alone := imported_alone OPERATOR(pg_catalog.+) 1;
                EXCEPTION WHEN data_exception OR integrity_constraint_violation THEN
                    GET STACKED DIAGNOSTICS err = MESSAGE_TEXT, err_state = RETURNED_SQLSTATE;
                    INSERT INTO pipeline.table_dead_letters (source_id, source_name, "row", error, sqlstate)
                    VALUES (s.id, s.name, pg_catalog.to_jsonb(r.src), err, err_state);
                    rejected := rejected OPERATOR(pg_catalog.+) 1;
                END;
            END;
        END LOOP;
        BEGIN
            EXECUTE pg_catalog.format('INSERT INTO %s (%s) SELECT %s FROM pg_temp.pipeline_checked_rows%s',
                                      s.target, target_columns, target_columns, conflict);
            GET DIAGNOSTICS imported = ROW_COUNT;
            imported := imported OPERATOR(pg_catalog.+) imported_alone;
        EXCEPTION WHEN data_exception OR integrity_constraint_violation THEN
            -- a constraint the copy lacks (unique, foreign key): row by row into the target
            imported := imported_alone;
            FOR r IN EXECUTE 'SELECT c FROM pg_temp.pipeline_checked_rows c' LOOP
                BEGIN
                    EXECUTE pg_catalog.format('INSERT INTO %s (%s) SELECT %s FROM (SELECT ($1).*) c%s',
                                              s.target, target_columns, target_columns, conflict) USING r.c;
                    imported := imported OPERATOR(pg_catalog.+) 1;
                EXCEPTION WHEN data_exception OR integrity_constraint_violation THEN
                    GET STACKED DIAGNOSTICS err = MESSAGE_TEXT, err_state = RETURNED_SQLSTATE;
                    INSERT INTO pipeline.table_dead_letters (source_id, source_name, "row", error, sqlstate)
                    VALUES (s.id, s.name, pg_catalog.to_jsonb(r.c), err, err_state);
                    rejected := rejected OPERATOR(pg_catalog.+) 1;
                END;
            END LOOP;
        END;
        EXECUTE 'DROP TABLE pg_temp.pipeline_checked_rows';
    END;
    IF s.filter IS NOT NULL THEN
        EXECUTE pg_catalog.format('INSERT INTO pipeline.table_dead_letters (source_id, source_name, "row", error) '
                                  'SELECT %s, %L, pg_catalog.to_jsonb(src), %L FROM %s src WHERE %s AND (%s) IS NOT TRUE',
                                  s.id, s.name, 'rejected by the filter: ' OPERATOR(pg_catalog.||) s.filter,
                                  read_from, range_cond, s.filter);
        GET DIAGNOSTICS filtered = ROW_COUNT;
        rejected := rejected OPERATOR(pg_catalog.+) filtered;
    END IF;

    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    IF read_from OPERATOR(pg_catalog.=) 'pg_temp.pipeline_table_source_fetch' THEN
        DROP FOREIGN TABLE pg_temp.pipeline_table_source_fetch;
    END IF;
    UPDATE pipeline.table_sources t SET watermark = bound
     WHERE t.id OPERATOR(pg_catalog.=) s.id AND t.watermark IS NOT DISTINCT FROM s.watermark;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'serialization_failure',
            MESSAGE = pg_catalog.format('the watermark of table source "%s" was moved by someone else', s.name),
            HINT = 'Another run of it committed first; this batch was not stored.  Run it again.';
    END IF;
    UPDATE pipeline.table_source_runs u
       SET batches = u.batches OPERATOR(pg_catalog.+) 1,
           rows_imported = u.rows_imported OPERATOR(pg_catalog.+) imported,
           rows_rejected = u.rows_rejected OPERATOR(pg_catalog.+) rejected,
           watermark_to = bound, updated_at = pg_catalog.clock_timestamp()
     WHERE u.id OPERATOR(pg_catalog.=) run_id;
    RETURN more_rows;
END
$$;
COMMENT ON FUNCTION pipeline.table_source_batch(bigint, bigint, boolean) IS
    'imports one batch of a table source in the current transaction; pipeline.run_table_source calls it';
REVOKE ALL ON FUNCTION pipeline.table_source_batch(bigint, bigint, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.table_source_batch(bigint, bigint, boolean) TO PUBLIC;

-- A procedure, to commit each batch: it cannot carry SET search_path (that
-- forbids transaction control), so every name in it is qualified.
CREATE PROCEDURE pipeline.run_table_source(name text)
LANGUAGE plpgsql
AS $$
DECLARE
    source_id bigint := pipeline.table_source_id(name);
    run_id bigint;
    more boolean;
    first_batch boolean := true;
    failed boolean := false;
    err text;
    err_state text;
    err_hint text;
BEGIN
    INSERT INTO pipeline.table_source_runs (source_id, owner, watermark_from)
    SELECT s.id, s.owner, s.watermark FROM pipeline.table_sources s WHERE s.id OPERATOR(pg_catalog.=) source_id
    RETURNING id INTO run_id;
    COMMIT;
    LOOP
        BEGIN
            more := pipeline.table_source_batch(source_id, run_id, first_batch);
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS err = MESSAGE_TEXT, err_state = RETURNED_SQLSTATE, err_hint = PG_EXCEPTION_HINT;
            failed := true;
        END;
        EXIT WHEN failed OR NOT more;
        COMMIT;
        first_batch := false;
    END LOOP;
    UPDATE pipeline.table_source_runs u
       SET state = CASE WHEN failed THEN 'failed' ELSE 'succeeded' END, error = err,
           finished_at = pg_catalog.clock_timestamp(), updated_at = pg_catalog.clock_timestamp()
     WHERE u.id OPERATOR(pg_catalog.=) run_id;
    COMMIT;
    IF failed THEN
        RAISE EXCEPTION USING ERRCODE = err_state,
            MESSAGE = pg_catalog.format('table source "%s" failed: %s', name, err),
            HINT = COALESCE(NULLIF(err_hint, ''), 'The batches before this one are committed; the next run resumes at the watermark.');
    END IF;
END
$$;
COMMENT ON PROCEDURE pipeline.run_table_source(text) IS
    'imports a table source''s new rows, committing each batch with its watermark; CALL it outside a transaction block, or schedule it as a non-atomic job';
REVOKE ALL ON PROCEDURE pipeline.run_table_source(text) FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE pipeline.run_table_source(text) TO PUBLIC;

CREATE VIEW pipeline.table_source_status WITH (security_invoker = true) AS
SELECT s.name AS source,
       s.source AS source_relation,
       s.target,
       s.mode,
       s.watermark_column,
       s.watermark,
       r.state AS last_state,
       r.started_at AS last_started_at,
       r.finished_at AS last_finished_at,
       r.batches,
       r.rows_imported,
       r.rows_rejected,
       pg_catalog.round((r.rows_imported OPERATOR(pg_catalog./)
                         GREATEST(EXTRACT(epoch FROM COALESCE(r.finished_at, r.updated_at) OPERATOR(pg_catalog.-) r.started_at), 0.001))::numeric, 1) AS rows_per_second,
       r.error AS last_error
  FROM pipeline.table_sources s
  LEFT JOIN LATERAL (SELECT * FROM pipeline.table_source_runs x WHERE x.source_id OPERATOR(pg_catalog.=) s.id
                      ORDER BY x.id DESC LIMIT 1) r ON true;
COMMENT ON VIEW pipeline.table_source_status IS
    'one row per table source: its watermark and its latest run''s state, progress (batches, rows, rows/s) and error';
REVOKE ALL ON pipeline.table_source_status FROM PUBLIC;
GRANT SELECT ON pipeline.table_source_status TO PUBLIC;

-- Report tables
--
-- A report is a real table holding a query's result.  A refresh deletes and
-- re-inserts the rows it recomputes in one transaction, so readers see the
-- old rows until it commits and are never blocked by it.  A report with a
-- partition column recomputes only the partitions its inputs' statement
-- triggers marked changed (pipeline.report_dirty).

CREATE SEQUENCE pipeline.report_id_seq;
CREATE SEQUENCE pipeline.report_dirty_id_seq;
CREATE SEQUENCE pipeline.report_refresh_id_seq;

CREATE TABLE pipeline.reports (
    id bigint PRIMARY KEY DEFAULT pg_catalog.nextval('pipeline.report_id_seq'),
    name text NOT NULL UNIQUE,
    owner regrole NOT NULL DEFAULT (CURRENT_USER)::regrole,
    query text NOT NULL,
    output regclass NOT NULL,
    key_columns text[],
    partition_column text,
    partition_type text,
    search_path text NOT NULL,
    time_zone text NOT NULL,    -- the creator's: partitions of times are days in it
    last_refreshed_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CHECK ((partition_column IS NULL) OPERATOR(pg_catalog.=) (partition_type IS NULL))
);
COMMENT ON TABLE pipeline.reports IS
    'report tables: the query each keeps the result of, and how it is partitioned';

CREATE TABLE pipeline.report_inputs (
    report_id bigint NOT NULL REFERENCES pipeline.reports (id) ON DELETE CASCADE,
    owner regrole NOT NULL DEFAULT (CURRENT_USER)::regrole,
    input regclass NOT NULL,
    expression text NOT NULL,   -- the report partition of a row of the input, SQL over "src"
    PRIMARY KEY (report_id, input)
);
COMMENT ON TABLE pipeline.report_inputs IS
    'the tables a partitioned report reads, with the expression giving the partition of their rows';

CREATE TABLE pipeline.report_dirty (
    id bigint PRIMARY KEY DEFAULT pg_catalog.nextval('pipeline.report_dirty_id_seq'),
    report_id bigint NOT NULL REFERENCES pipeline.reports (id) ON DELETE CASCADE,
    owner regrole NOT NULL,
    part text,
    everything boolean NOT NULL DEFAULT false,  -- every partition (after a TRUNCATE)
    marked_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX ON pipeline.report_dirty (report_id, id);
COMMENT ON TABLE pipeline.report_dirty IS
    'partitions of reports whose inputs changed since their last refresh';

CREATE TABLE pipeline.report_refreshes (
    id bigint PRIMARY KEY DEFAULT pg_catalog.nextval('pipeline.report_refresh_id_seq'),
    report_id bigint NOT NULL REFERENCES pipeline.reports (id) ON DELETE CASCADE,
    owner regrole NOT NULL DEFAULT (CURRENT_USER)::regrole,
    kind text NOT NULL,
    partitions integer,
    rows_deleted bigint NOT NULL,
    rows_inserted bigint NOT NULL,
    started_at timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    CHECK (kind OPERATOR(pg_catalog.=) ANY (ARRAY['full', 'changed', 'range']))
);
CREATE INDEX ON pipeline.report_refreshes (report_id, id);
COMMENT ON TABLE pipeline.report_refreshes IS
    'refresh history of report tables: what was recomputed, rows changed and duration';

ALTER TABLE pipeline.reports ENABLE ROW LEVEL SECURITY;
ALTER TABLE pipeline.report_inputs ENABLE ROW LEVEL SECURITY;
ALTER TABLE pipeline.report_dirty ENABLE ROW LEVEL SECURITY;
ALTER TABLE pipeline.report_refreshes ENABLE ROW LEVEL SECURITY;
CREATE POLICY owner_only ON pipeline.reports
    USING (pg_catalog.pg_has_role(owner, 'USAGE'))
    WITH CHECK (owner OPERATOR(pg_catalog.=) (CURRENT_USER)::regrole);
CREATE POLICY owner_only ON pipeline.report_inputs
    USING (pg_catalog.pg_has_role(owner, 'USAGE'))
    -- rows only for one's own reports, as their owner
    WITH CHECK (pg_catalog.pg_has_role(owner, 'USAGE')
                AND EXISTS (SELECT FROM pipeline.reports p WHERE p.id OPERATOR(pg_catalog.=) report_id
                                                    AND p.owner OPERATOR(pg_catalog.=) owner));
-- marks are written by the input trigger as the report's owner
CREATE POLICY owner_only ON pipeline.report_dirty
    USING (pg_catalog.pg_has_role(owner, 'USAGE'))
    -- rows only for one's own reports, as their owner
    WITH CHECK (pg_catalog.pg_has_role(owner, 'USAGE')
                AND EXISTS (SELECT FROM pipeline.reports p WHERE p.id OPERATOR(pg_catalog.=) report_id
                                                    AND p.owner OPERATOR(pg_catalog.=) owner));
CREATE POLICY owner_only ON pipeline.report_refreshes
    USING (pg_catalog.pg_has_role(owner, 'USAGE'))
    -- rows only for one's own reports, as their owner
    WITH CHECK (pg_catalog.pg_has_role(owner, 'USAGE')
                AND EXISTS (SELECT FROM pipeline.reports p WHERE p.id OPERATOR(pg_catalog.=) report_id
                                                    AND p.owner OPERATOR(pg_catalog.=) owner));
REVOKE ALL ON pipeline.reports, pipeline.report_inputs, pipeline.report_dirty,
              pipeline.report_refreshes FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON pipeline.reports, pipeline.report_inputs TO PUBLIC;
GRANT SELECT, INSERT, DELETE ON pipeline.report_dirty, pipeline.report_refreshes TO PUBLIC;
REVOKE ALL ON SEQUENCE pipeline.report_id_seq, pipeline.report_dirty_id_seq,
                       pipeline.report_refresh_id_seq FROM PUBLIC;
GRANT USAGE ON SEQUENCE pipeline.report_id_seq, pipeline.report_dirty_id_seq,
                        pipeline.report_refresh_id_seq TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('pipeline.reports', '');
SELECT pg_catalog.pg_extension_config_dump('pipeline.report_inputs', '');
SELECT pg_catalog.pg_extension_config_dump('pipeline.report_dirty', '');
SELECT pg_catalog.pg_extension_config_dump('pipeline.report_refreshes', '');
SELECT pg_catalog.pg_extension_config_dump('pipeline.report_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('pipeline.report_dirty_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('pipeline.report_refresh_id_seq', '');

CREATE FUNCTION pipeline.report_input_trigger()
RETURNS trigger
LANGUAGE c
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pipeline_report_input_trigger';
COMMENT ON FUNCTION pipeline.report_input_trigger() IS
    'trigger: marks the report partitions a statement on one of its inputs changed (created by pipeline.create_report)';
REVOKE ALL ON FUNCTION pipeline.report_input_trigger() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.report_input_trigger() TO PUBLIC;

-- Raises the error for an unknown report (others' reports are invisible too)
CREATE FUNCTION pipeline.report_id(report_name text)
RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found_id bigint;
BEGIN
    SELECT r.id INTO found_id FROM pipeline.reports r WHERE r.name OPERATOR(pg_catalog.=) report_name;
    IF found_id IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'undefined_object',
            MESSAGE = pg_catalog.format('report "%s" does not exist', report_name),
            HINT = 'SELECT name FROM pipeline.reports lists the reports you own.';
    END IF;
    RETURN found_id;
END
$$;
COMMENT ON FUNCTION pipeline.report_id(text) IS 'the id of a report you own, or an error';
REVOKE ALL ON FUNCTION pipeline.report_id(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.report_id(text) TO PUBLIC;

CREATE FUNCTION pipeline.refresh_report(
    name text,
    from_partition text DEFAULT NULL,
    to_partition text DEFAULT NULL,
    OUT kind text,
    OUT partitions integer,
    OUT rows_deleted bigint,
    OUT rows_inserted bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET datestyle = 'ISO, YMD'
SET intervalstyle = 'iso_8601'
SET timezone = 'UTC'
AS $$
DECLARE
    r pipeline.reports;
    started timestamptz := pg_catalog.clock_timestamp();
    parts text[];
    null_part boolean;
    full_refresh boolean;
BEGIN
    -- one refresh of a report at a time (a lock writers' marks do not wait for)
    SELECT * INTO r FROM pipeline.reports x WHERE x.id OPERATOR(pg_catalog.=) pipeline.report_id(refresh_report.name)
       FOR NO KEY UPDATE;
    IF (from_partition IS NULL) OPERATOR(pg_catalog.<>) (to_partition IS NULL) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'give both ends of the range to refresh, or neither',
            HINT = 'For example pipeline.refresh_report(''daily_sales'', ''2026-01-01'', ''2026-01-31'').';
    END IF;
    IF from_partition IS NOT NULL AND r.partition_column IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format('report "%s" has no partition column', name),
            HINT = 'Refresh it whole with pipeline.refresh_report(name), or create it with the option partition_column.';
    END IF;
    -- take the committed marks: those of writers still running stay for the next refresh
    IF from_partition IS NULL THEN
        WITH taken AS (DELETE FROM pipeline.report_dirty d WHERE d.report_id OPERATOR(pg_catalog.=) r.id
                       RETURNING d.part, d.everything)
        SELECT pg_catalog.array_agg(DISTINCT t.part) FILTER (WHERE t.part IS NOT NULL),
               pg_catalog.bool_or(t.part IS NULL AND NOT t.everything), pg_catalog.bool_or(t.everything)
          INTO parts, null_part, full_refresh
          FROM taken t;
    END IF;
    full_refresh := from_partition IS NULL
                    AND (r.partition_column IS NULL OR r.last_refreshed_at IS NULL OR COALESCE(full_refresh, false));

    -- the query resolves names, and reads times, as when the report was created
    PERFORM pg_catalog.set_config('search_path', r.search_path, true);
    PERFORM pg_catalog.set_config('TimeZone', r.time_zone, true);
    IF full_refresh THEN
        kind := 'full';
        EXECUTE pg_catalog.format('DELETE FROM %s', r.output);
        GET DIAGNOSTICS rows_deleted = ROW_COUNT;
        EXECUTE pg_catalog.format('INSERT INTO %s SELECT * FROM (%s) q', r.output, r.query);
        GET DIAGNOSTICS rows_inserted = ROW_COUNT;
    ELSIF from_partition IS NOT NULL THEN
        kind := 'range';
        EXECUTE pg_catalog.format('DELETE FROM %s o WHERE o.%I BETWEEN $1::%s AND $2::%s',
                                  r.output, r.partition_column, r.partition_type, r.partition_type)
          USING from_partition, to_partition;
        GET DIAGNOSTICS rows_deleted = ROW_COUNT;
        EXECUTE pg_catalog.format('INSERT INTO %s SELECT * FROM (%s) q WHERE q.%I BETWEEN $1::%s AND $2::%s',
                                  r.output, r.query, r.partition_column, r.partition_type, r.partition_type)
          USING from_partition, to_partition;
        GET DIAGNOSTICS rows_inserted = ROW_COUNT;
    ELSE
        kind := 'changed';
        parts := COALESCE(parts, '{}');
        null_part := COALESCE(null_part, false);
        partitions := pg_catalog.cardinality(parts) OPERATOR(pg_catalog.+) null_part::int;
        EXECUTE pg_catalog.format('DELETE FROM %s o WHERE o.%I = ANY ($1::%s[]) OR ($2 AND o.%I IS NULL)',
                                  r.output, r.partition_column, r.partition_type, r.partition_column)
          USING parts, null_part;
        GET DIAGNOSTICS rows_deleted = ROW_COUNT;
        EXECUTE pg_catalog.format('INSERT INTO %s SELECT * FROM (%s) q WHERE q.%I = ANY ($1::%s[]) OR ($2 AND q.%I IS NULL)',
                                  r.output, r.query, r.partition_column, r.partition_type, r.partition_column)
          USING parts, null_part;
        GET DIAGNOSTICS rows_inserted = ROW_COUNT;
    END IF;
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    UPDATE pipeline.reports x SET last_refreshed_at = pg_catalog.now() WHERE x.id OPERATOR(pg_catalog.=) r.id;
    INSERT INTO pipeline.report_refreshes (report_id, owner, kind, partitions, rows_deleted, rows_inserted,
                                           started_at, finished_at)
    VALUES (r.id, r.owner, kind, partitions, rows_deleted, rows_inserted, started, pg_catalog.clock_timestamp());
END
$$;
COMMENT ON FUNCTION pipeline.refresh_report(text, text, text) IS
    'refreshes a report: its changed partitions (or all of it, or the partitions in a range), in one transaction readers are never blocked by';
REVOKE ALL ON FUNCTION pipeline.refresh_report(text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.refresh_report(text, text, text) TO PUBLIC;

CREATE FUNCTION pipeline.create_report(
    name text,
    query text,
    options jsonb DEFAULT '{}',
    search_path text DEFAULT pg_catalog.current_setting('search_path'))
RETURNS regclass
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    output_name text := COALESCE(options->>'output', name);
    parts text[];
    output_table regclass;
    key_columns text[];
    partition_column text := options->>'partition_column';
    partition_type text;
    new_id bigint;
    input record;
    input_table regclass;
    event text;
BEGIN
    IF name IS NULL OR pg_catalog.btrim(name) OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'report name must not be empty',
            HINT = 'Give the report a name, for example ''daily_sales_report''.';
    END IF;
    IF query IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'the query of a report must not be null',
            HINT = 'Write the SELECT whose result the report table keeps.';
    END IF;
    PERFORM pipeline.check_kafka_settings(options, ARRAY['output', 'key', 'partition_column', 'inputs']);
    IF EXISTS (SELECT FROM pipeline.reports x WHERE x.name OPERATOR(pg_catalog.=) create_report.name) THEN
        RAISE EXCEPTION USING ERRCODE = 'duplicate_object',
            MESSAGE = pg_catalog.format('report "%s" already exists', name),
            HINT = 'Drop it first with pipeline.drop_report, or choose another name.';
    END IF;
    BEGIN
        parts := pg_catalog.parse_ident(output_name);
    EXCEPTION WHEN invalid_parameter_value THEN
        parts := NULL;
    END;
    IF parts IS NULL OR pg_catalog.cardinality(parts) OPERATOR(pg_catalog.>) 2 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_name',
            MESSAGE = pg_catalog.format('invalid report table name "%s"', output_name),
            HINT = 'Name the table, optionally with its schema, with the option output: {"output": "reports.daily_sales"}.';
    END IF;
    IF options ? 'key' THEN
        IF pg_catalog.jsonb_typeof(options->'key') OPERATOR(pg_catalog.<>) 'array' OR pg_catalog.jsonb_array_length(options->'key') OPERATOR(pg_catalog.=) 0 THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = 'option "key" must list the columns that identify a row of the report',
                HINT = 'For example ''{"key": ["day", "store_id"]}'': they get a unique index.';
        END IF;
        SELECT pg_catalog.array_agg(k ORDER BY n) INTO key_columns
          FROM pg_catalog.jsonb_array_elements_text(options->'key') WITH ORDINALITY AS e(k, n);
    END IF;
    IF (partition_column IS NULL) OPERATOR(pg_catalog.<>) (NOT options ? 'inputs') THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'options partition_column and inputs go together',
            HINT = 'For example ''{"partition_column": "day", "inputs": {"sales": "src.sold_at::date"}}'': each input''s expression gives the partition of its rows.';
    END IF;
    IF options ? 'inputs' AND (pg_catalog.jsonb_typeof(options->'inputs') OPERATOR(pg_catalog.<>) 'object'
                               OR options->'inputs' OPERATOR(pg_catalog.=) '{}'::jsonb) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'option "inputs" must map each table the query reads to the partition of its rows',
            HINT = 'For example ''{"inputs": {"sales": "src.sold_at::date", "daily_sales": "src.day"}}''.';
    END IF;

    -- the table, its rows and the inputs resolve names as the caller would
    PERFORM pg_catalog.set_config('search_path', search_path, true);
    EXECUTE pg_catalog.format('CREATE TABLE %s AS SELECT * FROM (%s) q WITH NO DATA',
        (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(p), '.') FROM pg_catalog.unnest(parts) p), query);
    output_table := pg_catalog.to_regclass((SELECT pg_catalog.string_agg(pg_catalog.quote_ident(p), '.') FROM pg_catalog.unnest(parts) p));
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);

    IF key_columns IS NOT NULL THEN
        PERFORM pipeline.target_column_type(output_table, k) FROM pg_catalog.unnest(key_columns) k;
        EXECUTE pg_catalog.format('CREATE UNIQUE INDEX ON %s (%s)', output_table,
            (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(k), ', ') FROM pg_catalog.unnest(key_columns) k));
    END IF;
    IF partition_column IS NOT NULL THEN
        partition_type := pg_catalog.format_type(pipeline.target_column_type(output_table, partition_column), NULL);
        IF key_columns IS NULL OR key_columns[1] OPERATOR(pg_catalog.<>) partition_column THEN
            EXECUTE pg_catalog.format('CREATE INDEX ON %s (%I)', output_table, partition_column);
        END IF;
    END IF;

    BEGIN
        INSERT INTO pipeline.reports (name, query, output, key_columns, partition_column, partition_type,
                                      search_path, time_zone)
        VALUES (name, query, output_table, key_columns, partition_column, partition_type, search_path,
                pg_catalog.current_setting('TimeZone'))
        RETURNING id INTO new_id;
    EXCEPTION WHEN unique_violation THEN
        RAISE EXCEPTION USING ERRCODE = 'duplicate_object',
            MESSAGE = pg_catalog.format('report "%s" already exists', name),
            HINT = 'Report names are shared by all roles: choose another name.';
    END;

    FOR input IN SELECT e.key, e.value FROM pg_catalog.jsonb_each_text(COALESCE(options->'inputs', '{}')) e LOOP
        PERFORM pg_catalog.set_config('search_path', search_path, true);
        input_table := pg_catalog.to_regclass(input.key);
        IF input_table IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'undefined_table',
                MESSAGE = pg_catalog.format('input table "%s" does not exist', input.key),
                HINT = 'Name the tables the query reads, as you would in the query.';
        END IF;
        -- one expression (a semicolon could end the statement it runs in), valid over the input's rows
        IF pg_catalog.strpos(input.value, ';') OPERATOR(pg_catalog.>) 0 THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = pg_catalog.format('the partition expression of input "%s" must not contain semicolons', input.key),
                HINT = 'Give one SQL expression over the input''s row src, for example ''src.sold_at::date''.';
        END IF;
        BEGIN
            EXECUTE pg_catalog.format('EXPLAIN SELECT (%s)::text FROM %s src', input.value, input_table);
        EXCEPTION WHEN syntax_error_or_access_rule_violation OR data_exception OR undefined_function THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = pg_catalog.format('invalid partition expression for input "%s": %s', input.key, SQLERRM),
                HINT = 'Give one SQL expression over the input''s row src, for example ''src.sold_at::date''.';
        END;
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
        IF NOT pg_catalog.has_table_privilege(input_table, 'TRIGGER') THEN
            RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
                MESSAGE = pg_catalog.format('permission denied to watch table %s', input_table),
                HINT = 'A report follows its inputs with triggers: their owner must grant you TRIGGER on them.';
        END IF;
        INSERT INTO pipeline.report_inputs (report_id, input, expression) VALUES (new_id, input_table, input.value);
        FOREACH event IN ARRAY ARRAY['insert', 'update', 'delete', 'truncate'] LOOP
            EXECUTE pg_catalog.format('CREATE TRIGGER %I AFTER %s ON %s %s FOR EACH STATEMENT '
                                      'EXECUTE FUNCTION pipeline.report_input_trigger(%L, %L)',
                'pipeline_report_' OPERATOR(pg_catalog.||) new_id OPERATOR(pg_catalog.||) '_' OPERATOR(pg_catalog.||) event,
                pg_catalog.upper(event), input_table,
                CASE event WHEN 'insert' THEN 'REFERENCING NEW TABLE AS pipeline_new'
                           WHEN 'update' THEN 'REFERENCING OLD TABLE AS pipeline_old NEW TABLE AS pipeline_new'
                           WHEN 'delete' THEN 'REFERENCING OLD TABLE AS pipeline_old'
                           ELSE '' END,
                new_id, (CURRENT_USER)::regrole::oid);
        END LOOP;
    END LOOP;

    PERFORM pipeline.refresh_report(name);
    RETURN output_table;
END
$$;
COMMENT ON FUNCTION pipeline.create_report(text, text, jsonb, text) IS
    'creates a report table holding a query''s result, filled now; with a partition column, refreshes recompute only changed partitions';
REVOKE ALL ON FUNCTION pipeline.create_report(text, text, jsonb, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.create_report(text, text, jsonb, text) TO PUBLIC;

CREATE FUNCTION pipeline.drop_report(name text, keep_output boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r pipeline.reports;
    input record;
    event text;
BEGIN
    SELECT * INTO r FROM pipeline.reports x WHERE x.id OPERATOR(pg_catalog.=) pipeline.report_id(drop_report.name);
    FOR input IN SELECT i.input FROM pipeline.report_inputs i WHERE i.report_id OPERATOR(pg_catalog.=) r.id LOOP
        IF EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) input.input) THEN
            FOREACH event IN ARRAY ARRAY['insert', 'update', 'delete', 'truncate'] LOOP
                EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS %I ON %s',
                    'pipeline_report_' OPERATOR(pg_catalog.||) r.id OPERATOR(pg_catalog.||) '_' OPERATOR(pg_catalog.||) event, input.input);
            END LOOP;
        END IF;
    END LOOP;
    DELETE FROM pipeline.reports x WHERE x.id OPERATOR(pg_catalog.=) r.id;
    IF NOT keep_output AND EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) r.output) THEN
        EXECUTE pg_catalog.format('DROP TABLE %s', r.output);
    END IF;
END
$$;
COMMENT ON FUNCTION pipeline.drop_report(text, boolean) IS
    'drops a report: its triggers, its history and (unless keep_output) its table';
REVOKE ALL ON FUNCTION pipeline.drop_report(text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.drop_report(text, boolean) TO PUBLIC;

CREATE VIEW pipeline.report_status WITH (security_invoker = true) AS
SELECT r.name AS report,
       r.output,
       r.partition_column,
       r.last_refreshed_at,
       (SELECT pg_catalog.count(DISTINCT d.part) FROM pipeline.report_dirty d
         WHERE d.report_id OPERATOR(pg_catalog.=) r.id) AS changed_partitions,
       f.kind AS last_kind,
       f.partitions AS last_partitions,
       f.rows_deleted AS last_rows_deleted,
       f.rows_inserted AS last_rows_inserted,
       f.finished_at OPERATOR(pg_catalog.-) f.started_at AS last_duration
  FROM pipeline.reports r
  LEFT JOIN LATERAL (SELECT * FROM pipeline.report_refreshes x WHERE x.report_id OPERATOR(pg_catalog.=) r.id
                      ORDER BY x.id DESC LIMIT 1) f ON true;
COMMENT ON VIEW pipeline.report_status IS
    'one row per report: when it was refreshed, how many partitions changed since, and its latest refresh';
REVOKE ALL ON pipeline.report_status FROM PUBLIC;
GRANT SELECT ON pipeline.report_status TO PUBLIC;

-- Fraud scoring ------------------------------------------------------------
-- A scorer watches a table of card transactions: a statement trigger scores
-- every inserted row in the writer's transaction (src/fraud_scorer.c), and
-- writes <name>_scores, <name>_alerts and <name>_state beside the table;
-- <name>_labels takes confirmed frauds (from any insert, or a Kafka source).

CREATE SEQUENCE pipeline.fraud_scorer_id_seq;
CREATE SEQUENCE pipeline.fraud_rule_id_seq;

CREATE TABLE pipeline.fraud_scorers (
    id bigint PRIMARY KEY DEFAULT pg_catalog.nextval('pipeline.fraud_scorer_id_seq'),
    name text NOT NULL UNIQUE,
    owner regrole NOT NULL DEFAULT (CURRENT_USER)::regrole,
    source regclass NOT NULL,
    id_column text NOT NULL,
    customer_column text NOT NULL,
    terminal_column text NOT NULL,
    amount_column text NOT NULL,
    time_column text NOT NULL,
    label_column text,          -- a label carried by each row, seen only after label_delay
    label_delay interval NOT NULL,
    alert_threshold double precision NOT NULL,
    notify_channel text,
    time_zone text NOT NULL,    -- the creator's: weekend and night are local
    scores regclass NOT NULL,
    alerts regclass NOT NULL,
    labels regclass NOT NULL,
    state regclass NOT NULL,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- the scorer sizes its terminal state by the delay
    CHECK (label_delay OPERATOR(pg_catalog.>=) '0'::interval AND label_delay OPERATOR(pg_catalog.<=) '30 days'::interval),
    CHECK (alert_threshold OPERATOR(pg_catalog.>=) 0 AND alert_threshold OPERATOR(pg_catalog.<=) 1)
);
COMMENT ON TABLE pipeline.fraud_scorers IS
    'fraud scorers: the transactions table each scores, its columns, and the tables it writes';

CREATE TABLE pipeline.fraud_models (
    scorer_id bigint NOT NULL REFERENCES pipeline.fraud_scorers (id) ON DELETE CASCADE,
    version integer NOT NULL,
    owner regrole NOT NULL DEFAULT (CURRENT_USER)::regrole,
    features text[] NOT NULL,
    means double precision[] NOT NULL,
    stds double precision[] NOT NULL,
    weights double precision[] NOT NULL,
    intercept double precision NOT NULL,
    active boolean NOT NULL DEFAULT false,
    training jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (scorer_id, version),
    CHECK (pg_catalog.cardinality(means) OPERATOR(pg_catalog.=) pg_catalog.cardinality(features)
           AND pg_catalog.cardinality(stds) OPERATOR(pg_catalog.=) pg_catalog.cardinality(features)
           AND pg_catalog.cardinality(weights) OPERATOR(pg_catalog.=) pg_catalog.cardinality(features)
           AND pg_catalog.array_position(means, NULL) IS NULL
           AND pg_catalog.array_position(stds, NULL) IS NULL
           AND pg_catalog.array_position(weights, NULL) IS NULL)
);
CREATE UNIQUE INDEX ON pipeline.fraud_models (scorer_id) WHERE active;
COMMENT ON TABLE pipeline.fraud_models IS
    'versions of each fraud scorer''s logistic model: standardisation, weights, and which one scores';

CREATE TABLE pipeline.fraud_rules (
    id bigint PRIMARY KEY DEFAULT pg_catalog.nextval('pipeline.fraud_rule_id_seq'),
    scorer_id bigint NOT NULL REFERENCES pipeline.fraud_scorers (id) ON DELETE CASCADE,
    owner regrole NOT NULL DEFAULT (CURRENT_USER)::regrole,
    name text NOT NULL,
    group_by text NOT NULL,
    aggregate text NOT NULL,
    window_length interval NOT NULL,
    operator text NOT NULL,
    threshold double precision NOT NULL,
    weight double precision NOT NULL DEFAULT 0,
    action text NOT NULL DEFAULT 'alert',
    enabled boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    UNIQUE (scorer_id, name),
    CHECK (group_by OPERATOR(pg_catalog.=) ANY (ARRAY['customer', 'terminal'])),
    CHECK (aggregate OPERATOR(pg_catalog.=) ANY (ARRAY['count', 'sum', 'avg', 'max', 'min'])),
    CHECK (operator OPERATOR(pg_catalog.=) ANY (ARRAY['>', '>=', '<', '<=', '=', '<>'])),
    CHECK (action OPERATOR(pg_catalog.=) ANY (ARRAY['alert', 'review', 'block']))
);
COMMENT ON TABLE pipeline.fraud_rules IS
    'rules of fraud scorers: an aggregate of a card''s or terminal''s transactions over a window, compared with a limit';

ALTER TABLE pipeline.fraud_scorers ENABLE ROW LEVEL SECURITY;
ALTER TABLE pipeline.fraud_models ENABLE ROW LEVEL SECURITY;
ALTER TABLE pipeline.fraud_rules ENABLE ROW LEVEL SECURITY;
CREATE POLICY owner_only ON pipeline.fraud_scorers
    USING (pg_catalog.pg_has_role(owner, 'USAGE'))
    WITH CHECK (owner OPERATOR(pg_catalog.=) (CURRENT_USER)::regrole);
CREATE POLICY owner_only ON pipeline.fraud_models
    USING (pg_catalog.pg_has_role(owner, 'USAGE'))
    -- rows only for one's own scorers, as their owner
    WITH CHECK (pg_catalog.pg_has_role(owner, 'USAGE')
                AND EXISTS (SELECT FROM pipeline.fraud_scorers p WHERE p.id OPERATOR(pg_catalog.=) scorer_id
                                                    AND p.owner OPERATOR(pg_catalog.=) owner));
CREATE POLICY owner_only ON pipeline.fraud_rules
    USING (pg_catalog.pg_has_role(owner, 'USAGE'))
    WITH CHECK (pg_catalog.pg_has_role(owner, 'USAGE')
                AND EXISTS (SELECT FROM pipeline.fraud_scorers p WHERE p.id OPERATOR(pg_catalog.=) scorer_id
                                                    AND p.owner OPERATOR(pg_catalog.=) owner));
REVOKE ALL ON pipeline.fraud_scorers, pipeline.fraud_models, pipeline.fraud_rules FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON pipeline.fraud_scorers, pipeline.fraud_models,
                                        pipeline.fraud_rules TO PUBLIC;
REVOKE ALL ON SEQUENCE pipeline.fraud_scorer_id_seq, pipeline.fraud_rule_id_seq FROM PUBLIC;
GRANT USAGE ON SEQUENCE pipeline.fraud_scorer_id_seq, pipeline.fraud_rule_id_seq TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('pipeline.fraud_scorers', '');
SELECT pg_catalog.pg_extension_config_dump('pipeline.fraud_models', '');
SELECT pg_catalog.pg_extension_config_dump('pipeline.fraud_rules', '');
SELECT pg_catalog.pg_extension_config_dump('pipeline.fraud_scorer_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('pipeline.fraud_rule_id_seq', '');

CREATE FUNCTION pipeline.simulate_transactions(
    customers integer DEFAULT 5000,
    terminals integer DEFAULT 10000,
    days integer DEFAULT 183,
    seed bigint DEFAULT 0,
    start_date date DEFAULT '2018-04-01')
RETURNS TABLE (transaction_id bigint, tx_time timestamp, customer_id bigint, terminal_id bigint,
               amount numeric, is_fraud boolean, fraud_scenario integer)
LANGUAGE c STRICT VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pipeline_simulate_transactions';
COMMENT ON FUNCTION pipeline.simulate_transactions(integer, integer, integer, bigint, date) IS
    'simulated card transactions in time order, with the Fraud Detection Handbook''s model and its three fraud scenarios (seeded)';
REVOKE ALL ON FUNCTION pipeline.simulate_transactions(integer, integer, integer, bigint, date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.simulate_transactions(integer, integer, integer, bigint, date) TO PUBLIC;

CREATE FUNCTION pipeline.fraud_feature_names()
RETURNS text[]
LANGUAGE c IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pipeline_fraud_feature_names';
COMMENT ON FUNCTION pipeline.fraud_feature_names() IS
    'the features a fraud scorer computes for each transaction, in the order of its feature vectors and model weights';
REVOKE ALL ON FUNCTION pipeline.fraud_feature_names() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.fraud_feature_names() TO PUBLIC;

CREATE FUNCTION pipeline.fraud_state_bytes(per_card boolean, label_delay interval DEFAULT '7 days')
RETURNS integer
LANGUAGE c IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pipeline_fraud_state_bytes';
COMMENT ON FUNCTION pipeline.fraud_state_bytes(boolean, interval) IS
    'bytes of state a fraud scorer keeps per card (true) or per terminal (false, for a label delay), before rule windows';
REVOKE ALL ON FUNCTION pipeline.fraud_state_bytes(boolean, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.fraud_state_bytes(boolean, interval) TO PUBLIC;

CREATE FUNCTION pipeline.fraud_score_trigger()
RETURNS trigger
LANGUAGE c
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pipeline_fraud_score_trigger';
COMMENT ON FUNCTION pipeline.fraud_score_trigger() IS
    'trigger: scores the transactions a statement inserted (created by pipeline.create_fraud_scorer)';
REVOKE ALL ON FUNCTION pipeline.fraud_score_trigger() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.fraud_score_trigger() TO PUBLIC;

CREATE FUNCTION pipeline.fraud_label_trigger()
RETURNS trigger
LANGUAGE c
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pipeline_fraud_label_trigger';
COMMENT ON FUNCTION pipeline.fraud_label_trigger() IS
    'trigger: applies the labels a statement inserted to terminal risk, scores and alerts (created by pipeline.create_fraud_scorer)';
REVOKE ALL ON FUNCTION pipeline.fraud_label_trigger() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.fraud_label_trigger() TO PUBLIC;

CREATE FUNCTION pipeline.fraud_fit_logistic(
    scores regclass, from_time timestamptz, to_time timestamptz, c double precision, max_iterations integer,
    OUT means double precision[], OUT stds double precision[], OUT intercept double precision,
    OUT weights double precision[], OUT iterations integer, OUT training_rows bigint,
    OUT frauds bigint, OUT converged boolean)
RETURNS record
LANGUAGE c STRICT VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pipeline_fraud_fit_logistic';
COMMENT ON FUNCTION pipeline.fraud_fit_logistic(regclass, timestamptz, timestamptz, double precision, integer) IS
    'fits a logistic regression (Newton''s method, L2 penalty 1/(2c), standardised features) on a scores table''s rows in a period';
REVOKE ALL ON FUNCTION pipeline.fraud_fit_logistic(regclass, timestamptz, timestamptz, double precision, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.fraud_fit_logistic(regclass, timestamptz, timestamptz, double precision, integer) TO PUBLIC;

-- Raises the error for an unknown scorer (others' scorers are invisible too)
CREATE FUNCTION pipeline.fraud_scorer_id(scorer_name text)
RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found_id bigint;
BEGIN
    SELECT s.id INTO found_id FROM pipeline.fraud_scorers s WHERE s.name OPERATOR(pg_catalog.=) scorer_name;
    IF found_id IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'undefined_object',
            MESSAGE = pg_catalog.format('fraud scorer "%s" does not exist', scorer_name),
            HINT = 'SELECT name FROM pipeline.fraud_scorers lists the scorers you own.';
    END IF;
    RETURN found_id;
END
$$;
COMMENT ON FUNCTION pipeline.fraud_scorer_id(text) IS 'the id of a fraud scorer you own, or an error';
REVOKE ALL ON FUNCTION pipeline.fraud_scorer_id(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.fraud_scorer_id(text) TO PUBLIC;

CREATE FUNCTION pipeline.create_fraud_scorer(name text, source regclass, options jsonb DEFAULT '{}')
RETURNS regclass
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    id_column text := COALESCE(options->>'id_column', 'transaction_id');
    customer_column text := COALESCE(options->>'customer_column', 'customer_id');
    terminal_column text := COALESCE(options->>'terminal_column', 'terminal_id');
    amount_column text := COALESCE(options->>'amount_column', 'amount');
    time_column text := COALESCE(options->>'time_column', 'tx_time');
    label_column text := options->>'label_column';
    delay interval;
    threshold double precision;
    channel text := CASE WHEN options ? 'notify_channel' THEN options->>'notify_channel'
                         ELSE 'pipeline_fraud_alerts' END;
    prefix text := COALESCE(options->>'output', name);
    schema_name text;
    time_type regtype;
    t regtype;
    c text;
    new_id bigint;
    scores_table regclass;
    alerts_table regclass;
    labels_table regclass;
    state_table regclass;
BEGIN
    IF name IS NULL OR pg_catalog.btrim(name) OPERATOR(pg_catalog.=) '' OR name ~ '[[:cntrl:]]' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'fraud scorer name must not be empty or hold control characters',
            HINT = 'Give the scorer a name, for example ''cards''.';
    END IF;
    IF source IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'a fraud scorer needs a transactions table',
            HINT = 'For example pipeline.create_fraud_scorer(''cards'', ''card_transactions'').';
    END IF;
    PERFORM pipeline.check_kafka_settings(options, ARRAY['id_column', 'customer_column', 'terminal_column',
        'amount_column', 'time_column', 'label_column', 'label_delay', 'alert_threshold',
        'notify_channel', 'output']);
    IF (SELECT r.relkind FROM pg_catalog.pg_class r WHERE r.oid OPERATOR(pg_catalog.=) source) NOT IN ('r', 'p') THEN
        RAISE EXCEPTION USING ERRCODE = 'wrong_object_type',
            MESSAGE = pg_catalog.format('%s is not a table', source),
            HINT = 'A fraud scorer watches the inserts into a table, for example the target of a Kafka source.';
    END IF;
    IF NOT pg_catalog.has_table_privilege(source, 'TRIGGER') THEN
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
            MESSAGE = pg_catalog.format('permission denied to watch table %s', source),
            HINT = 'A scorer follows its table with a trigger: its owner must grant you TRIGGER on it.';
    END IF;
    BEGIN
        delay := COALESCE(options->>'label_delay', '7 days')::interval;
        threshold := COALESCE(options->>'alert_threshold', '0.5')::double precision;
    EXCEPTION WHEN data_exception THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format('invalid label_delay or alert_threshold: %s', SQLERRM),
            HINT = 'Give label_delay as an interval (''7 days'') and alert_threshold as a number between 0 and 1.';
    END;
    IF delay OPERATOR(pg_catalog.<) '0'::interval OR delay OPERATOR(pg_catalog.>) '30 days'::interval
       OR NOT threshold BETWEEN 0 AND 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'label_delay must be between 0 and 30 days and alert_threshold between 0 and 1',
            HINT = 'The label delay is how long frauds take to be confirmed (the Handbook uses 7 days).';
    END IF;
    IF channel OPERATOR(pg_catalog.=) '' OR pg_catalog.length(channel) OPERATOR(pg_catalog.>) 63 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'notify_channel must be 1 to 63 characters',
            HINT = 'Name a channel to LISTEN on, or give null to send no notifications.';
    END IF;

    -- the columns exist and have types the scorer reads
    FOREACH c IN ARRAY ARRAY[id_column, customer_column, terminal_column] LOOP
        t := pipeline.target_column_type(source, c);
        IF t NOT IN ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype) THEN
            RAISE EXCEPTION USING ERRCODE = 'datatype_mismatch',
                MESSAGE = pg_catalog.format('column "%s" must be an integer, not %s', c, t),
                HINT = 'Transaction, card and terminal ids are integers (smallint, integer or bigint).';
        END IF;
    END LOOP;
    t := pipeline.target_column_type(source, amount_column);
    IF t NOT IN ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype, 'numeric'::regtype,
                 'real'::regtype, 'double precision'::regtype) THEN
        RAISE EXCEPTION USING ERRCODE = 'datatype_mismatch',
            MESSAGE = pg_catalog.format('column "%s" must be a number, not %s', amount_column, t),
            HINT = 'The amount is numeric, an integer or a floating-point number.';
    END IF;
    time_type := pipeline.target_column_type(source, time_column);
    IF time_type NOT IN ('timestamp with time zone'::regtype, 'timestamp without time zone'::regtype) THEN
        RAISE EXCEPTION USING ERRCODE = 'datatype_mismatch',
            MESSAGE = pg_catalog.format('column "%s" must be a timestamp, not %s', time_column, time_type),
            HINT = 'The time of a transaction is a timestamptz (or a timestamp in local time).';
    END IF;
    IF label_column IS NOT NULL AND pipeline.target_column_type(source, label_column) OPERATOR(pg_catalog.<>) 'boolean'::regtype THEN
        RAISE EXCEPTION USING ERRCODE = 'datatype_mismatch',
            MESSAGE = pg_catalog.format('column "%s" must be a boolean', label_column),
            HINT = 'label_column names a boolean column: true for a fraud, seen by terminal risk only after label_delay.';
    END IF;

    -- the output tables, beside the source, owned by the creator
    SELECT n.nspname INTO schema_name FROM pg_catalog.pg_class r
      JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) r.relnamespace
     WHERE r.oid OPERATOR(pg_catalog.=) source;
    BEGIN
        EXECUTE pg_catalog.format('CREATE TABLE %I.%I (transaction_id bigint PRIMARY KEY, customer_id bigint NOT NULL, '
            'terminal_id bigint NOT NULL, tx_time %s NOT NULL, amount double precision NOT NULL, '
            'score double precision, features double precision[] NOT NULL, rules text[], label boolean, '
            'model_version integer, scored_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(), '
            'seq bigint)',
            schema_name, prefix OPERATOR(pg_catalog.||) '_scores', time_type);
        scores_table := pg_catalog.format('%I.%I', schema_name, prefix OPERATOR(pg_catalog.||) '_scores')::regclass;
        -- by time only: an index by card, written in random order, halved the scoring rate
        EXECUTE pg_catalog.format('CREATE INDEX ON %s (tx_time)', scores_table);
        -- the order of scoring, which rebuilding the state replays from a checkpoint:
        -- it grows with the table, so a BRIN index finds the newest rows for nearly nothing
        EXECUTE pg_catalog.format('CREATE INDEX ON %s USING brin (seq)', scores_table);
        EXECUTE pg_catalog.format('CREATE TABLE %I.%I (alert_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, '
            'transaction_id bigint NOT NULL, customer_id bigint NOT NULL, terminal_id bigint NOT NULL, '
            'tx_time %s NOT NULL, amount double precision NOT NULL, score double precision, action text NOT NULL, '
            'reasons jsonb NOT NULL, raised_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(), outcome text)',
            schema_name, prefix OPERATOR(pg_catalog.||) '_alerts', time_type);
        alerts_table := pg_catalog.format('%I.%I', schema_name, prefix OPERATOR(pg_catalog.||) '_alerts')::regclass;
        EXECUTE pg_catalog.format('CREATE INDEX ON %s (transaction_id)', alerts_table);
        EXECUTE pg_catalog.format('CREATE INDEX ON %s (raised_at)', alerts_table);
        EXECUTE pg_catalog.format('CREATE TABLE %I.%I (transaction_id bigint NOT NULL, is_fraud boolean NOT NULL DEFAULT true, '
            'labelled_at timestamptz NOT NULL DEFAULT pg_catalog.now())',
            schema_name, prefix OPERATOR(pg_catalog.||) '_labels');
        labels_table := pg_catalog.format('%I.%I', schema_name, prefix OPERATOR(pg_catalog.||) '_labels')::regclass;
        -- rewritten all the time: room for HOT updates, and lz4 (pglz cost a fifth of the scoring time);
        -- seq: the state has seen every transaction scored before it
        EXECUTE pg_catalog.format('CREATE TABLE %I.%I (kind "char" NOT NULL, entity bigint NOT NULL, state bytea NOT NULL, '
            'seq bigint NOT NULL DEFAULT 0, PRIMARY KEY (kind, entity)) WITH (fillfactor = 50)', schema_name, prefix OPERATOR(pg_catalog.||) '_state');
        BEGIN
            EXECUTE pg_catalog.format('ALTER TABLE %I.%I ALTER COLUMN state SET COMPRESSION lz4',
                schema_name, prefix OPERATOR(pg_catalog.||) '_state');
        EXCEPTION WHEN feature_not_supported THEN
            NULL;   -- a server built without lz4 keeps pglz
        END;
        state_table := pg_catalog.format('%I.%I', schema_name, prefix OPERATOR(pg_catalog.||) '_state')::regclass;
    EXCEPTION WHEN duplicate_table THEN
        RAISE EXCEPTION USING ERRCODE = 'duplicate_table',
            MESSAGE = pg_catalog.format('a table named like the outputs of fraud scorer "%s" already exists: %s', name, SQLERRM),
            HINT = 'Choose another scorer name, or give the tables another prefix with the option output.';
    END;

    BEGIN
        INSERT INTO pipeline.fraud_scorers (name, source, id_column, customer_column, terminal_column, amount_column,
                                            time_column, label_column, label_delay, alert_threshold, notify_channel,
                                            time_zone, scores, alerts, labels, state)
        VALUES (name, source, id_column, customer_column, terminal_column, amount_column, time_column, label_column,
                delay, threshold, channel, pg_catalog.current_setting('TimeZone'),
                scores_table, alerts_table, labels_table, state_table)
        RETURNING id INTO new_id;
    EXCEPTION WHEN unique_violation THEN
        RAISE EXCEPTION USING ERRCODE = 'duplicate_object',
            MESSAGE = pg_catalog.format('fraud scorer "%s" already exists', name),
            HINT = 'Fraud scorer names are shared by all roles: choose another name.';
    END;
    EXECUTE pg_catalog.format('CREATE TRIGGER %I AFTER INSERT ON %s REFERENCING NEW TABLE AS pipeline_new '
                              'FOR EACH STATEMENT EXECUTE FUNCTION pipeline.fraud_score_trigger(%L)',
        'pipeline_fraud_' OPERATOR(pg_catalog.||) new_id OPERATOR(pg_catalog.||) '_score', source, new_id);
    EXECUTE pg_catalog.format('CREATE TRIGGER %I AFTER INSERT ON %s REFERENCING NEW TABLE AS pipeline_new '
                              'FOR EACH STATEMENT EXECUTE FUNCTION pipeline.fraud_label_trigger(%L)',
        'pipeline_fraud_' OPERATOR(pg_catalog.||) new_id OPERATOR(pg_catalog.||) '_label', labels_table, new_id);
    RETURN scores_table;
END
$$;
COMMENT ON FUNCTION pipeline.create_fraud_scorer(text, regclass, jsonb) IS
    'scores every transaction inserted into a table, in the inserting transaction; creates <name>_scores, _alerts, _labels and _state beside it and returns the scores table';
REVOKE ALL ON FUNCTION pipeline.create_fraud_scorer(text, regclass, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.create_fraud_scorer(text, regclass, jsonb) TO PUBLIC;

CREATE FUNCTION pipeline.drop_fraud_scorer(name text, keep_tables boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    s pipeline.fraud_scorers;
    t regclass;
BEGIN
    SELECT * INTO s FROM pipeline.fraud_scorers f WHERE f.id OPERATOR(pg_catalog.=) pipeline.fraud_scorer_id(name);
    -- tables dropped by hand since are skipped
    IF EXISTS (SELECT FROM pg_catalog.pg_class r WHERE r.oid OPERATOR(pg_catalog.=) s.source) THEN
        EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS %I ON %s',
            'pipeline_fraud_' OPERATOR(pg_catalog.||) s.id OPERATOR(pg_catalog.||) '_score', s.source);
    END IF;
    IF keep_tables THEN
        IF EXISTS (SELECT FROM pg_catalog.pg_class r WHERE r.oid OPERATOR(pg_catalog.=) s.labels) THEN
            EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS %I ON %s',
                'pipeline_fraud_' OPERATOR(pg_catalog.||) s.id OPERATOR(pg_catalog.||) '_label', s.labels);
        END IF;
    ELSE
        FOR t IN SELECT r.oid::regclass FROM pg_catalog.pg_class r
                  WHERE r.oid OPERATOR(pg_catalog.=) ANY (ARRAY[s.scores, s.alerts, s.labels, s.state]::oid[]) LOOP
            EXECUTE pg_catalog.format('DROP TABLE %s', t);
        END LOOP;
    END IF;
    DELETE FROM pipeline.fraud_scorers f WHERE f.id OPERATOR(pg_catalog.=) s.id;
END
$$;
COMMENT ON FUNCTION pipeline.drop_fraud_scorer(text, boolean) IS
    'drops a fraud scorer, its models and rules, and its tables (unless keep_tables)';
REVOKE ALL ON FUNCTION pipeline.drop_fraud_scorer(text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.drop_fraud_scorer(text, boolean) TO PUBLIC;

CREATE FUNCTION pipeline.reset_fraud_scorer(name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    s pipeline.fraud_scorers;
BEGIN
    SELECT * INTO s FROM pipeline.fraud_scorers f WHERE f.id OPERATOR(pg_catalog.=) pipeline.fraud_scorer_id(name);
    EXECUTE pg_catalog.format('TRUNCATE %s, %s, %s, %s', s.scores, s.alerts, s.labels, s.state);
END
$$;
COMMENT ON FUNCTION pipeline.reset_fraud_scorer(text) IS
    'forgets what a fraud scorer learnt from its stream: empties its scores, alerts, labels and per-card and per-terminal state (models and rules stay)';
REVOKE ALL ON FUNCTION pipeline.reset_fraud_scorer(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.reset_fraud_scorer(text) TO PUBLIC;

CREATE FUNCTION pipeline.checkpoint_fraud_scorer(name text)
RETURNS bigint
LANGUAGE c
SET search_path = pg_catalog, pg_temp
STRICT
AS 'MODULE_PATHNAME', 'pipeline_checkpoint_fraud_scorer';
COMMENT ON FUNCTION pipeline.checkpoint_fraud_scorer(text) IS
    'writes a fraud scorer''s per-card and per-terminal state as of now into its _state table (scorers otherwise write it every pg_pipeline.fraud_checkpoint_interval); returns the number of states written';
REVOKE ALL ON FUNCTION pipeline.checkpoint_fraud_scorer(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.checkpoint_fraud_scorer(text) TO PUBLIC;

CREATE FUNCTION pipeline.train_fraud_model(
    name text, from_time timestamptz, to_time timestamptz, options jsonb DEFAULT '{}')
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    s pipeline.fraud_scorers;
    fit record;
    c double precision;
    iterations integer;
    activate boolean;
    new_version integer;
BEGIN
    SELECT * INTO s FROM pipeline.fraud_scorers f WHERE f.id OPERATOR(pg_catalog.=) pipeline.fraud_scorer_id(name);
    PERFORM pipeline.check_kafka_settings(options, ARRAY['c', 'max_iterations', 'activate']);
    IF from_time IS NULL OR to_time IS NULL OR from_time OPERATOR(pg_catalog.>=) to_time THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'the training period must have a start before its end',
            HINT = 'For example pipeline.train_fraud_model(''cards'', ''2018-07-25'', ''2018-08-01'').';
    END IF;
    BEGIN
        c := COALESCE(options->>'c', '1')::double precision;
        iterations := COALESCE(options->>'max_iterations', '100')::integer;
        activate := COALESCE(options->>'activate', 'true')::boolean;
    EXCEPTION WHEN data_exception THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format('invalid training option: %s', SQLERRM),
            HINT = 'c is a positive number, max_iterations an integer, activate a boolean.';
    END;
    fit := pipeline.fraud_fit_logistic(s.scores, from_time, to_time, c, iterations);
    -- versions are per scorer; the lock keeps two trainings from taking the same number
    PERFORM pg_catalog.pg_advisory_xact_lock(1886546035, s.id::integer);
    SELECT COALESCE(pg_catalog.max(m.version), 0) OPERATOR(pg_catalog.+) 1 INTO new_version
      FROM pipeline.fraud_models m WHERE m.scorer_id OPERATOR(pg_catalog.=) s.id;
    IF activate THEN
        UPDATE pipeline.fraud_models m SET active = false
         WHERE m.scorer_id OPERATOR(pg_catalog.=) s.id AND m.active;
    END IF;
    INSERT INTO pipeline.fraud_models (scorer_id, version, owner, features, means, stds, weights, intercept, active, training)
    VALUES (s.id, new_version, s.owner, pipeline.fraud_feature_names(), fit.means, fit.stds, fit.weights, fit.intercept,
            activate, pg_catalog.jsonb_build_object('from', from_time, 'to', to_time, 'c', c,
                'iterations', fit.iterations, 'converged', fit.converged,
                'rows', fit.training_rows, 'frauds', fit.frauds));
    RETURN new_version;
END
$$;
COMMENT ON FUNCTION pipeline.train_fraud_model(text, timestamptz, timestamptz, jsonb) IS
    'trains a new version of a fraud scorer''s logistic model on the transactions it scored in a period (labels as known now) and, unless activate is false, scores with it from the next batch';
REVOKE ALL ON FUNCTION pipeline.train_fraud_model(text, timestamptz, timestamptz, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.train_fraud_model(text, timestamptz, timestamptz, jsonb) TO PUBLIC;

CREATE FUNCTION pipeline.activate_fraud_model(name text, version integer)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    scorer bigint := pipeline.fraud_scorer_id(name);
BEGIN
    PERFORM FROM pipeline.fraud_models m WHERE m.scorer_id OPERATOR(pg_catalog.=) scorer
                                          AND m.version OPERATOR(pg_catalog.=) activate_fraud_model.version;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'undefined_object',
            MESSAGE = pg_catalog.format('fraud scorer "%s" has no model version %s', name, version),
            HINT = 'SELECT version FROM pipeline.fraud_models lists the versions.';
    END IF;
    UPDATE pipeline.fraud_models m SET active = (m.version OPERATOR(pg_catalog.=) activate_fraud_model.version)
     WHERE m.scorer_id OPERATOR(pg_catalog.=) scorer
       AND m.active IS DISTINCT FROM (m.version OPERATOR(pg_catalog.=) activate_fraud_model.version);
END
$$;
COMMENT ON FUNCTION pipeline.activate_fraud_model(text, integer) IS
    'makes a model version the one a fraud scorer scores with, from its next batch';
REVOKE ALL ON FUNCTION pipeline.activate_fraud_model(text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.activate_fraud_model(text, integer) TO PUBLIC;

CREATE FUNCTION pipeline.export_fraud_model(name text, version integer DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    m pipeline.fraud_models;
BEGIN
    SELECT * INTO m FROM pipeline.fraud_models f
     WHERE f.scorer_id OPERATOR(pg_catalog.=) pipeline.fraud_scorer_id(name)
       AND CASE WHEN export_fraud_model.version IS NULL THEN f.active
                ELSE f.version OPERATOR(pg_catalog.=) export_fraud_model.version END;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'undefined_object',
            MESSAGE = pg_catalog.format('fraud scorer "%s" has no %s', name,
                COALESCE('model version ' OPERATOR(pg_catalog.||) version, 'active model')),
            HINT = 'Train one with pipeline.train_fraud_model, or import one with pipeline.import_fraud_model.';
    END IF;
    RETURN pg_catalog.jsonb_build_object('format', 'pg_pipeline logistic model', 'format_version', 1,
        'version', m.version, 'features', m.features, 'means', m.means, 'stds', m.stds,
        'weights', m.weights, 'intercept', m.intercept, 'training', m.training);
END
$$;
COMMENT ON FUNCTION pipeline.export_fraud_model(text, integer) IS
    'a fraud scorer''s model (the active one, or a version) as JSON: features, standardisation, weights, intercept';
REVOKE ALL ON FUNCTION pipeline.export_fraud_model(text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.export_fraud_model(text, integer) TO PUBLIC;

CREATE FUNCTION pipeline.import_fraud_model(name text, model jsonb, activate boolean DEFAULT true)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    scorer bigint := pipeline.fraud_scorer_id(name);
    names text[] := pipeline.fraud_feature_names();
    given text[];
    means double precision[];
    stds double precision[];
    weights double precision[];
    intercept double precision;
    position integer;
    new_version integer;
    feature text;
BEGIN
    IF model IS NULL OR pg_catalog.jsonb_typeof(model) OPERATOR(pg_catalog.<>) 'object'
       OR pg_catalog.jsonb_typeof(model->'features') IS DISTINCT FROM 'array'
       OR pg_catalog.jsonb_typeof(model->'means') IS DISTINCT FROM 'array'
       OR pg_catalog.jsonb_typeof(model->'stds') IS DISTINCT FROM 'array'
       OR pg_catalog.jsonb_typeof(model->'weights') IS DISTINCT FROM 'array'
       OR pg_catalog.jsonb_typeof(model->'intercept') IS DISTINCT FROM 'number' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'a model must be a JSON object with the arrays features, means, stds and weights and the number intercept',
            HINT = 'Import what pipeline.export_fraud_model returns.';
    END IF;
    BEGIN
        given := ARRAY(SELECT pg_catalog.jsonb_array_elements_text(model->'features'));
        intercept := (model->>'intercept')::double precision;
        -- the weights in the scorer's feature order, whatever the order given
        FOREACH feature IN ARRAY names LOOP
            position := pg_catalog.array_position(given, feature);
            IF position IS NULL THEN
                RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                    MESSAGE = pg_catalog.format('the model has no weight for feature "%s"', feature),
                    HINT = 'A model needs every feature of pipeline.fraud_feature_names().';
            END IF;
            means := means OPERATOR(pg_catalog.||) ((model->'means'->>(position OPERATOR(pg_catalog.-) 1))::double precision);
            stds := stds OPERATOR(pg_catalog.||) ((model->'stds'->>(position OPERATOR(pg_catalog.-) 1))::double precision);
            weights := weights OPERATOR(pg_catalog.||) ((model->'weights'->>(position OPERATOR(pg_catalog.-) 1))::double precision);
        END LOOP;
    EXCEPTION WHEN invalid_text_representation OR numeric_value_out_of_range THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format('the model holds a value that is not a number: %s', SQLERRM),
            HINT = 'means, stds and weights are arrays of numbers, one per feature.';
    END;
    IF pg_catalog.cardinality(given) OPERATOR(pg_catalog.<>) pg_catalog.cardinality(names)
       OR pg_catalog.jsonb_array_length(model->'means') OPERATOR(pg_catalog.<>) pg_catalog.cardinality(names)
       OR pg_catalog.jsonb_array_length(model->'stds') OPERATOR(pg_catalog.<>) pg_catalog.cardinality(names)
       OR pg_catalog.jsonb_array_length(model->'weights') OPERATOR(pg_catalog.<>) pg_catalog.cardinality(names)
       OR pg_catalog.array_position(means, NULL) IS NOT NULL
       OR pg_catalog.array_position(stds, NULL) IS NOT NULL
       OR pg_catalog.array_position(weights, NULL) IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format('a model has exactly %s features, each with a mean, a standard deviation and a weight',
                                        pg_catalog.cardinality(names)),
            HINT = 'Import what pipeline.export_fraud_model returns.';
    END IF;
    IF EXISTS (SELECT FROM pg_catalog.unnest(stds) d WHERE NOT d OPERATOR(pg_catalog.>) 0
                                                       OR d OPERATOR(pg_catalog.=) ANY (ARRAY['infinity', 'NaN']::double precision[]))
       OR EXISTS (SELECT FROM pg_catalog.unnest(means OPERATOR(pg_catalog.||) weights OPERATOR(pg_catalog.||) intercept) v
                   WHERE v OPERATOR(pg_catalog.=) ANY (ARRAY['infinity', '-infinity', 'NaN']::double precision[])) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'a model''s standard deviations must be positive and its numbers finite',
            HINT = 'Import what pipeline.export_fraud_model returns.';
    END IF;
    PERFORM pg_catalog.pg_advisory_xact_lock(1886546035, scorer::integer);
    SELECT COALESCE(pg_catalog.max(m.version), 0) OPERATOR(pg_catalog.+) 1 INTO new_version
      FROM pipeline.fraud_models m WHERE m.scorer_id OPERATOR(pg_catalog.=) scorer;
    IF activate THEN
        UPDATE pipeline.fraud_models m SET active = false WHERE m.scorer_id OPERATOR(pg_catalog.=) scorer AND m.active;
    END IF;
    INSERT INTO pipeline.fraud_models (scorer_id, version, owner, features, means, stds, weights, intercept, active, training)
    SELECT scorer, new_version, s.owner, names, means, stds, weights, intercept, activate,
           pg_catalog.jsonb_build_object('imported', COALESCE(model->'training', 'true'::jsonb))
      FROM pipeline.fraud_scorers s WHERE s.id OPERATOR(pg_catalog.=) scorer;
    RETURN new_version;
END
$$;
COMMENT ON FUNCTION pipeline.import_fraud_model(text, jsonb, boolean) IS
    'adds a model version from JSON (as pipeline.export_fraud_model writes it, features in any order) and by default scores with it';
REVOKE ALL ON FUNCTION pipeline.import_fraud_model(text, jsonb, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.import_fraud_model(text, jsonb, boolean) TO PUBLIC;

CREATE FUNCTION pipeline.add_fraud_rule(
    scorer text, name text, group_by text, aggregate text, window_length interval, operator text,
    threshold double precision, options jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    scorer_id bigint := pipeline.fraud_scorer_id(scorer);
    new_id bigint;
    weight double precision;
    action text := COALESCE(options->>'action', 'alert');
BEGIN
    PERFORM pipeline.check_kafka_settings(options, ARRAY['weight', 'action']);
    IF name IS NULL OR pg_catalog.btrim(name) OPERATOR(pg_catalog.=) '' OR name ~ '[[:cntrl:]]' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'rule name must not be empty or hold control characters',
            HINT = 'Name the rule for the alerts that cite it, for example ''card_burst''.';
    END IF;
    IF group_by IS NULL OR NOT group_by OPERATOR(pg_catalog.=) ANY (ARRAY['customer', 'terminal']) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format('unknown grouping "%s"', group_by),
            HINT = 'A rule groups transactions by customer (the card) or by terminal.';
    END IF;
    IF aggregate IS NULL OR NOT aggregate OPERATOR(pg_catalog.=) ANY (ARRAY['count', 'sum', 'avg', 'max', 'min']) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format('unknown rule aggregate "%s"', aggregate),
            HINT = 'Use count, sum, avg, max or min (of the amounts in the window).';
    END IF;
    IF window_length IS NULL OR window_length OPERATOR(pg_catalog.<) '1 second'::interval
       OR window_length OPERATOR(pg_catalog.>) '366 days'::interval THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'a rule''s window must be between 1 second and 366 days',
            HINT = 'For example ''10 minutes''.';
    END IF;
    IF operator IS NULL OR NOT operator OPERATOR(pg_catalog.=) ANY (ARRAY['>', '>=', '<', '<=', '=', '<>']) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format('unknown comparison "%s"', operator),
            HINT = 'Use >, >=, <, <=, = or <>.';
    END IF;
    IF threshold IS NULL OR threshold OPERATOR(pg_catalog.=) ANY (ARRAY['infinity', '-infinity', 'NaN']::double precision[]) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'a rule''s threshold must be a finite number',
            HINT = 'For example 5 (transactions) or 1000 (amount).';
    END IF;
    IF NOT action OPERATOR(pg_catalog.=) ANY (ARRAY['alert', 'review', 'block']) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format('unknown rule action "%s"', action),
            HINT = 'Use alert, review or block.';
    END IF;
    BEGIN
        weight := COALESCE(options->>'weight', '0')::double precision;
    EXCEPTION WHEN data_exception THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format('invalid rule weight: %s', SQLERRM),
            HINT = 'The weight is a number added to the model''s log-odds when the rule fires.';
    END;
    BEGIN
        INSERT INTO pipeline.fraud_rules (scorer_id, owner, name, group_by, aggregate, window_length, operator,
                                          threshold, weight, action)
        SELECT scorer_id, s.owner, name, group_by, aggregate, window_length, operator, threshold, weight, action
          FROM pipeline.fraud_scorers s WHERE s.id OPERATOR(pg_catalog.=) scorer_id
        RETURNING id INTO new_id;
    EXCEPTION WHEN unique_violation THEN
        RAISE EXCEPTION USING ERRCODE = 'duplicate_object',
            MESSAGE = pg_catalog.format('fraud scorer "%s" already has a rule "%s"', scorer, name),
            HINT = 'Drop it first with pipeline.drop_fraud_rule, or choose another name.';
    END;
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION pipeline.add_fraud_rule(text, text, text, text, interval, text, double precision, jsonb) IS
    'adds a rule to a fraud scorer, in effect from its next batch: an aggregate of a card''s or terminal''s amounts over a window (current transaction included) compared with a threshold; options weight and action';
REVOKE ALL ON FUNCTION pipeline.add_fraud_rule(text, text, text, text, interval, text, double precision, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.add_fraud_rule(text, text, text, text, interval, text, double precision, jsonb) TO PUBLIC;

CREATE FUNCTION pipeline.drop_fraud_rule(scorer text, name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM pipeline.fraud_rules r
     WHERE r.scorer_id OPERATOR(pg_catalog.=) pipeline.fraud_scorer_id(scorer) AND r.name OPERATOR(pg_catalog.=) drop_fraud_rule.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'undefined_object',
            MESSAGE = pg_catalog.format('fraud scorer "%s" has no rule "%s"', scorer, name),
            HINT = 'SELECT name FROM pipeline.fraud_rules lists the rules.';
    END IF;
END
$$;
COMMENT ON FUNCTION pipeline.drop_fraud_rule(text, text) IS
    'removes a rule from a fraud scorer, from its next batch';
REVOKE ALL ON FUNCTION pipeline.drop_fraud_rule(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.drop_fraud_rule(text, text) TO PUBLIC;

CREATE FUNCTION pipeline.evaluate_fraud_scorer(
    name text, from_time timestamptz, to_time timestamptz, k integer DEFAULT 100,
    known_since timestamptz DEFAULT NULL,
    OUT transactions bigint, OUT frauds bigint, OUT auc double precision,
    OUT average_precision double precision, OUT card_precision_at_k double precision)
RETURNS record
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    s pipeline.fraud_scorers;
    local_time text;
    test_set text;
    day date;
    detected bigint[] := '{}';
    top record;
    days integer := 0;
    precision_sum double precision := 0;
BEGIN
    SELECT * INTO s FROM pipeline.fraud_scorers f WHERE f.id OPERATOR(pg_catalog.=) pipeline.fraud_scorer_id(name);
    IF k IS NULL OR k OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'k must be at least 1',
            HINT = 'Card precision@k counts the compromised cards among the k highest-scored each day; the Handbook uses 100.';
    END IF;
    -- days are the scorer's: a timestamptz in its time zone, a timestamp as it is
    local_time := CASE WHEN pipeline.target_column_type(s.source, s.time_column)
                            OPERATOR(pg_catalog.=) 'timestamp with time zone'::regtype
                       THEN pg_catalog.format('(%%1$s.tx_time AT TIME ZONE %L)', s.time_zone)
                       ELSE '%1$s.tx_time' END;
    -- the scored transactions of the period, without the cards whose fraud
    -- was known (label delay passed) before the day began
    test_set := pg_catalog.format(
        'SELECT t.customer_id, t.score, COALESCE(t.label, false) AS label, (%s)::date AS day FROM %s t '
        'WHERE t.tx_time OPERATOR(pg_catalog.>=) %L AND t.tx_time OPERATOR(pg_catalog.<) %L AND t.score IS NOT NULL '
        'AND NOT EXISTS (SELECT FROM %s k WHERE k.customer_id OPERATOR(pg_catalog.=) t.customer_id AND k.label '
        'AND k.tx_time OPERATOR(pg_catalog.>=) %L '
        'AND %s OPERATOR(pg_catalog.<) ((%s)::date OPERATOR(pg_catalog.-) %L::interval))',
        pg_catalog.format(local_time, 't'), s.scores, from_time, to_time, s.scores,
        COALESCE(known_since, '-infinity'), pg_catalog.format(local_time, 'k'),
        pg_catalog.format(local_time, 't'), s.label_delay);

    -- AUC: the Mann-Whitney statistic with average ranks for ties
    EXECUTE pg_catalog.format(
        'WITH t AS (%s), r AS (SELECT label, pg_catalog.rank() OVER (ORDER BY score) AS first_rank, '
        'pg_catalog.count(*) OVER (PARTITION BY score) AS ties FROM t), '
        'c AS (SELECT pg_catalog.count(*) FILTER (WHERE label)::double precision AS p, '
        'pg_catalog.count(*) FILTER (WHERE NOT label)::double precision AS n, '
        'pg_catalog.sum(first_rank OPERATOR(pg_catalog.+) ((ties OPERATOR(pg_catalog.-) 1) OPERATOR(pg_catalog./) 2.0)) '
        'FILTER (WHERE label)::double precision AS rank_sum FROM r) '
        'SELECT (p OPERATOR(pg_catalog.+) n)::bigint, p::bigint, '
        '(rank_sum OPERATOR(pg_catalog.-) ((p OPERATOR(pg_catalog.*) (p OPERATOR(pg_catalog.+) 1)) OPERATOR(pg_catalog./) 2)) '
        'OPERATOR(pg_catalog./) NULLIF(p OPERATOR(pg_catalog.*) n, 0) FROM c', test_set)
    INTO transactions, frauds, auc;

    -- average precision: one step per distinct score, no interpolation
    EXECUTE pg_catalog.format(
        'WITH t AS (%s), g AS (SELECT score, pg_catalog.count(*) AS n, pg_catalog.count(*) FILTER (WHERE label) AS tp '
        'FROM t GROUP BY score), c AS (SELECT tp, pg_catalog.sum(tp) OVER (ORDER BY score DESC) AS cum_tp, '
        'pg_catalog.sum(n) OVER (ORDER BY score DESC) AS cum_n FROM g) '
        'SELECT pg_catalog.sum(tp::double precision OPERATOR(pg_catalog.*) cum_tp OPERATOR(pg_catalog./) cum_n) '
        'OPERATOR(pg_catalog./) NULLIF(pg_catalog.sum(tp), 0) FROM c', test_set)
    INTO average_precision;

    -- card precision@k, per day: cards detected on an earlier day are left out
    FOR day IN EXECUTE pg_catalog.format('SELECT DISTINCT day FROM (%s) t ORDER BY day', test_set) LOOP
        EXECUTE pg_catalog.format(
            'SELECT pg_catalog.count(*) FILTER (WHERE label) AS hits, '
            'pg_catalog.array_agg(customer_id) FILTER (WHERE label) AS cards FROM ('
            'SELECT customer_id, pg_catalog.max(score) AS score, pg_catalog.bool_or(label) AS label '
            'FROM (%s) t WHERE day OPERATOR(pg_catalog.=) %L AND NOT customer_id OPERATOR(pg_catalog.=) ANY (%L) '
            'GROUP BY customer_id ORDER BY score DESC, customer_id LIMIT %s) top', test_set, day, detected, k)
        INTO top;
        precision_sum := precision_sum OPERATOR(pg_catalog.+) (top.hits::double precision OPERATOR(pg_catalog./) k);
        detected := detected OPERATOR(pg_catalog.||) COALESCE(top.cards, '{}');
        days := days OPERATOR(pg_catalog.+) 1;
    END LOOP;
    card_precision_at_k := precision_sum OPERATOR(pg_catalog./) NULLIF(days, 0);
END
$$;
COMMENT ON FUNCTION pipeline.evaluate_fraud_scorer(text, timestamptz, timestamptz, integer, timestamptz) IS
    'AUC, average precision and card precision@k of a scorer''s scores in a period against the labels, as the Fraud Detection Handbook defines them (cards with a fraud known before each day left out)';
REVOKE ALL ON FUNCTION pipeline.evaluate_fraud_scorer(text, timestamptz, timestamptz, integer, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.evaluate_fraud_scorer(text, timestamptz, timestamptz, integer, timestamptz) TO PUBLIC;

CREATE VIEW pipeline.fraud_scorer_status WITH (security_invoker = true) AS
SELECT s.name AS scorer,
       s.source,
       s.scores,
       s.alerts,
       s.labels,
       m.version AS model_version,
       m.created_at AS model_created_at,
       (SELECT pg_catalog.count(*) FROM pipeline.fraud_rules r
         WHERE r.scorer_id OPERATOR(pg_catalog.=) s.id AND r.enabled) AS rules,
       s.label_delay,
       s.alert_threshold,
       s.notify_channel
  FROM pipeline.fraud_scorers s
  LEFT JOIN pipeline.fraud_models m ON m.scorer_id OPERATOR(pg_catalog.=) s.id AND m.active;
COMMENT ON VIEW pipeline.fraud_scorer_status IS
    'one row per fraud scorer: its tables, the model version it scores with, its enabled rules';
REVOKE ALL ON pipeline.fraud_scorer_status FROM PUBLIC;
GRANT SELECT ON pipeline.fraud_scorer_status TO PUBLIC;

-- Kafka sinks: rows of a table produced to a Kafka topic, after they commit

CREATE SEQUENCE pipeline.kafka_sink_id_seq;
CREATE TABLE pipeline.kafka_sinks (
    id bigint PRIMARY KEY DEFAULT pg_catalog.nextval('pipeline.kafka_sink_id_seq'),
    name text NOT NULL UNIQUE,
    owner regrole NOT NULL DEFAULT (CURRENT_USER)::regrole,
    source regclass NOT NULL,
    position_column text NOT NULL,
    key_column text,
    brokers text NOT NULL,
    topic text NOT NULL,
    -- librdkafka properties, such as SASL credentials: the row is readable by its owner only
    kafka_properties jsonb NOT NULL DEFAULT '{}',
    batch_size integer NOT NULL DEFAULT 10000,
    -- the last position produced and acknowledged by the broker
    produced_position bigint NOT NULL,
    produced_rows bigint NOT NULL DEFAULT 0,
    last_run_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CHECK (batch_size BETWEEN 1 AND 1000000),
    CHECK (pg_catalog.jsonb_typeof(kafka_properties) OPERATOR(pg_catalog.=) 'object')
);
COMMENT ON TABLE pipeline.kafka_sinks IS
    'Kafka sinks: which table is produced to which topic, and the position produced so far; change them with the pipeline.*kafka_sink functions';
ALTER TABLE pipeline.kafka_sinks ENABLE ROW LEVEL SECURITY;
CREATE POLICY owner_only ON pipeline.kafka_sinks
    USING (pg_catalog.pg_has_role(owner, 'USAGE'))
    WITH CHECK (owner OPERATOR(pg_catalog.=) (CURRENT_USER)::regrole);
REVOKE ALL ON pipeline.kafka_sinks FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON pipeline.kafka_sinks TO PUBLIC;
REVOKE ALL ON SEQUENCE pipeline.kafka_sink_id_seq FROM PUBLIC;
GRANT USAGE ON SEQUENCE pipeline.kafka_sink_id_seq TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('pipeline.kafka_sinks', '');
SELECT pg_catalog.pg_extension_config_dump('pipeline.kafka_sink_id_seq', '');

CREATE FUNCTION pipeline.create_kafka_sink(name text, source regclass, brokers text, topic text,
                                           options jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    position_column text := options->>'position_column';
    key_column text := options->>'key_column';
    batch_size integer;
    start_position text := COALESCE(options->>'start', 'earliest');
    unknown text;
    t regtype;
    start_at bigint;
    new_id bigint;
BEGIN
    IF name IS NULL OR pg_catalog.btrim(name) OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'a kafka sink needs a name',
            HINT = 'For example pipeline.create_kafka_sink(''alerts_out'', ''card_alerts'', ''localhost:9092'', ''alerts'').';
    END IF;
    IF source IS NULL OR brokers IS NULL OR pg_catalog.btrim(brokers) OPERATOR(pg_catalog.=) ''
       OR topic IS NULL OR pg_catalog.btrim(topic) OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'a kafka sink needs a table, brokers and a topic',
            HINT = 'Give the table to produce, the bootstrap brokers (host:port, comma-separated) and the topic.';
    END IF;
    IF options IS NULL OR pg_catalog.jsonb_typeof(options) OPERATOR(pg_catalog.<>) 'object' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'options must be a JSON object',
            HINT = 'For example ''{"position_column": "alert_id", "key_column": "customer_id"}''.';
    END IF;
    SELECT pg_catalog.string_agg(k, ', ') INTO unknown FROM pg_catalog.jsonb_object_keys(options) k
     WHERE k OPERATOR(pg_catalog.<>) ALL (ARRAY['position_column', 'key_column', 'batch_size', 'start', 'kafka_properties']);
    IF unknown IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format('unknown kafka sink option: %s', unknown),
            HINT = 'Options are position_column, key_column, batch_size, start and kafka_properties.';
    END IF;
    IF NOT pg_catalog.has_table_privilege(source, 'SELECT') THEN
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
            MESSAGE = pg_catalog.format('permission denied to read table %s', source),
            HINT = 'A kafka sink reads its table as its owner: you need SELECT on it.';
    END IF;

    -- the position: a given column, else the table's one-column integer primary key
    IF position_column IS NULL THEN
        SELECT a.attname INTO position_column
          FROM pg_catalog.pg_constraint c
          JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) c.conrelid
                                        AND a.attnum OPERATOR(pg_catalog.=) c.conkey[1]
         WHERE c.conrelid OPERATOR(pg_catalog.=) source AND c.contype OPERATOR(pg_catalog.=) 'p'
           AND pg_catalog.cardinality(c.conkey) OPERATOR(pg_catalog.=) 1
           AND a.atttypid OPERATOR(pg_catalog.=) ANY (ARRAY['smallint'::regtype, 'integer'::regtype, 'bigint'::regtype]::oid[]);
        IF position_column IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = pg_catalog.format('table %s has no one-column integer primary key to produce it in order', source),
                HINT = 'Name an increasing integer column with the option position_column.';
        END IF;
    END IF;
    t := pipeline.target_column_type(source, position_column);
    IF t NOT IN ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype) THEN
        RAISE EXCEPTION USING ERRCODE = 'datatype_mismatch',
            MESSAGE = pg_catalog.format('column "%s" must be an integer, not %s', position_column, t),
            HINT = 'The position column increases with each row committed, like an identity column.';
    END IF;
    -- a position shared by two rows could be cut by a batch's end, and the rest skipped
    PERFORM FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a
               ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid AND a.attnum OPERATOR(pg_catalog.=) i.indkey[0]
     WHERE i.indrelid OPERATOR(pg_catalog.=) source AND i.indisunique AND i.indnkeyatts OPERATOR(pg_catalog.=) 1
       AND i.indpred IS NULL AND a.attname OPERATOR(pg_catalog.=) position_column;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format('column "%s" of %s has no unique index', position_column, source),
            HINT = 'A position identifies one row: give the column a primary key or a unique index.';
    END IF;
    IF key_column IS NOT NULL THEN
        PERFORM pipeline.target_column_type(source, key_column);
    END IF;
    BEGIN
        batch_size := COALESCE((options->>'batch_size')::integer, 10000);
    EXCEPTION WHEN invalid_text_representation OR numeric_value_out_of_range THEN
        batch_size := 0;
    END;
    IF batch_size NOT BETWEEN 1 AND 1000000 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format('batch_size must be between 1 and 1000000, not %s', options->>'batch_size'),
            HINT = 'batch_size is the most rows one run produces.';
    END IF;
    IF options ? 'kafka_properties' AND pg_catalog.jsonb_typeof(options->'kafka_properties') OPERATOR(pg_catalog.<>) 'object' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'option "kafka_properties" must be a JSON object of librdkafka properties',
            HINT = 'For example ''{"kafka_properties": {"security.protocol": "SASL_SSL"}}''.';
    END IF;
    IF start_position OPERATOR(pg_catalog.=) 'earliest' THEN
        start_at := -9223372036854775808;
    ELSIF start_position OPERATOR(pg_catalog.=) 'latest' THEN
        EXECUTE pg_catalog.format('SELECT COALESCE(pg_catalog.max(%I), -9223372036854775808)::bigint FROM %s',
                                  position_column, source) INTO start_at;
    ELSE
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format('start must be earliest or latest, not "%s"', start_position),
            HINT = 'earliest produces the rows already in the table too; latest only rows added from now on.';
    END IF;

    BEGIN
        INSERT INTO pipeline.kafka_sinks (name, source, position_column, key_column, brokers, topic,
                                          kafka_properties, batch_size, produced_position)
        VALUES (name, source, position_column, key_column, brokers, topic,
                COALESCE(options->'kafka_properties', '{}'), batch_size, start_at)
        RETURNING id INTO new_id;
    EXCEPTION WHEN unique_violation THEN
        RAISE EXCEPTION USING ERRCODE = 'duplicate_object',
            MESSAGE = pg_catalog.format('kafka sink "%s" already exists', name),
            HINT = 'Kafka sink names are shared by all roles: choose another name.';
    END;
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION pipeline.create_kafka_sink(text, regclass, text, text, jsonb) IS
    'defines a Kafka sink: the rows of a table, in the order of an increasing column, produced to a topic as JSON by pipeline.run_kafka_sink (run it from a job); returns its id';
REVOKE ALL ON FUNCTION pipeline.create_kafka_sink(text, regclass, text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.create_kafka_sink(text, regclass, text, text, jsonb) TO PUBLIC;

CREATE FUNCTION pipeline.run_kafka_sink(name text)
RETURNS bigint
LANGUAGE c STRICT
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pipeline_run_kafka_sink';
COMMENT ON FUNCTION pipeline.run_kafka_sink(text) IS
    'produces the rows a Kafka sink has not produced yet (up to its batch_size), waits for the broker to acknowledge them, and records the new position in the same transaction; returns the number of rows produced';
REVOKE ALL ON FUNCTION pipeline.run_kafka_sink(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.run_kafka_sink(text) TO PUBLIC;

CREATE FUNCTION pipeline.drop_kafka_sink(name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
BEGIN
    DELETE FROM pipeline.kafka_sinks s WHERE s.name OPERATOR(pg_catalog.=) name;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'undefined_object',
            MESSAGE = pg_catalog.format('kafka sink "%s" does not exist', name),
            HINT = 'SELECT name FROM pipeline.kafka_sink_status lists the sinks you own.';
    END IF;
END
$$;
COMMENT ON FUNCTION pipeline.drop_kafka_sink(text) IS 'drops a Kafka sink (what it produced stays in the topic)';
REVOKE ALL ON FUNCTION pipeline.drop_kafka_sink(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.drop_kafka_sink(text) TO PUBLIC;

CREATE VIEW pipeline.kafka_sink_status WITH (security_invoker = true) AS
SELECT s.name,
       s.source,
       s.topic,
       s.position_column,
       s.key_column,
       NULLIF(s.produced_position, -9223372036854775808) AS produced_position,
       s.produced_rows,
       s.last_run_at
  FROM pipeline.kafka_sinks s;
COMMENT ON VIEW pipeline.kafka_sink_status IS
    'one row per Kafka sink you own: its table, topic, and what it has produced so far';
REVOKE ALL ON pipeline.kafka_sink_status FROM PUBLIC;
GRANT SELECT ON pipeline.kafka_sink_status TO PUBLIC;

-- Anomaly detectors: an online baseline per series of a windowed table (a
-- continuous aggregate's output, say), a score per closed window, and one
-- alert per incident

CREATE SEQUENCE pipeline.detector_id_seq;
CREATE TABLE pipeline.detectors (
    id bigint PRIMARY KEY DEFAULT pg_catalog.nextval('pipeline.detector_id_seq'),
    name text NOT NULL UNIQUE,
    owner regrole NOT NULL DEFAULT (CURRENT_USER)::regrole,
    source regclass NOT NULL,
    time_column text NOT NULL,
    value_column text NOT NULL,
    series_columns text[] NOT NULL DEFAULT '{}',
    window_length interval NOT NULL,
    lateness interval NOT NULL DEFAULT '0',
    alpha double precision NOT NULL DEFAULT 0.1,
    threshold double precision NOT NULL DEFAULT 4,
    direction text NOT NULL DEFAULT 'both',
    warm_up integer NOT NULL DEFAULT 10,
    min_volume double precision NOT NULL DEFAULT 0,
    min_stddev double precision NOT NULL DEFAULT 1,
    missing_as_zero boolean NOT NULL DEFAULT true,
    new_series text NOT NULL DEFAULT 'warm_up',
    seasonality text NOT NULL DEFAULT 'none',
    season_warm_up integer NOT NULL DEFAULT 3,
    time_zone text NOT NULL DEFAULT 'UTC',
    notify_channel text,
    alerts regclass NOT NULL,
    state regclass NOT NULL,
    -- windows before it are closed and scored
    closed_until timestamptz,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CHECK (window_length OPERATOR(pg_catalog.>) '0'::interval),
    CHECK (lateness OPERATOR(pg_catalog.>=) '0'::interval),
    CHECK (alpha OPERATOR(pg_catalog.>) 0 AND alpha OPERATOR(pg_catalog.<=) 1),
    CHECK (threshold OPERATOR(pg_catalog.>) 0),
    CHECK (direction OPERATOR(pg_catalog.=) ANY (ARRAY['both', 'spike', 'drop'])),
    CHECK (warm_up OPERATOR(pg_catalog.>=) 1),
    CHECK (min_volume OPERATOR(pg_catalog.>=) 0),
    CHECK (min_stddev OPERATOR(pg_catalog.>) 0),
    CHECK (new_series OPERATOR(pg_catalog.=) ANY (ARRAY['warm_up', 'population'])),
    CHECK (seasonality OPERATOR(pg_catalog.=) ANY (ARRAY['none', 'hour_of_day', 'hour_of_week'])),
    CHECK (season_warm_up OPERATOR(pg_catalog.>=) 1)
);
COMMENT ON TABLE pipeline.detectors IS
    'anomaly detectors: which windowed table and value each watches, its baseline settings, and how far it has scored';
ALTER TABLE pipeline.detectors ENABLE ROW LEVEL SECURITY;
CREATE POLICY owner_only ON pipeline.detectors
    USING (pg_catalog.pg_has_role(owner, 'USAGE'))
    WITH CHECK (owner OPERATOR(pg_catalog.=) (CURRENT_USER)::regrole);
REVOKE ALL ON pipeline.detectors FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON pipeline.detectors TO PUBLIC;
REVOKE ALL ON SEQUENCE pipeline.detector_id_seq FROM PUBLIC;
GRANT USAGE ON SEQUENCE pipeline.detector_id_seq TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('pipeline.detectors', '');
SELECT pg_catalog.pg_extension_config_dump('pipeline.detector_id_seq', '');

CREATE FUNCTION pipeline.detector_trigger()
RETURNS trigger
LANGUAGE c
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pipeline_detector_trigger';
COMMENT ON FUNCTION pipeline.detector_trigger() IS
    'statement trigger of an anomaly detector on its table: scores the windows that closed';
REVOKE ALL ON FUNCTION pipeline.detector_trigger() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.detector_trigger() TO PUBLIC;

CREATE FUNCTION pipeline.create_detector(name text, source regclass, value_column text, options jsonb DEFAULT '{}')
RETURNS regclass
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    time_column text := options->>'time_column';
    series text[];
    window_length interval;
    lateness interval;
    alpha double precision;
    threshold double precision;
    direction text := COALESCE(options->>'direction', 'both');
    warm_up integer;
    min_volume double precision;
    min_stddev double precision;
    missing_as_zero boolean;
    new_series text := COALESCE(options->>'new_series', 'warm_up');
    seasonality text := COALESCE(options->>'seasonality', 'none');
    season_warm_up integer;
    time_zone text := COALESCE(options->>'time_zone', 'UTC');
    channel text := CASE WHEN options ? 'notify_channel' THEN options->>'notify_channel' ELSE 'pipeline_anomalies' END;
    prefix text := COALESCE(options->>'output', name);
    unknown text;
    t regtype;
    c text;
    schema_name text;
    alerts_table regclass;
    state_table regclass;
    new_id bigint;
BEGIN
    IF name IS NULL OR pg_catalog.btrim(name) OPERATOR(pg_catalog.=) '' OR source IS NULL OR value_column IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'a detector needs a name, a table and a value column',
            HINT = 'For example pipeline.create_detector(''errors'', ''errors_per_minute'', ''errors'', ''{"time_column": "minute", "window": "1 minute"}'').';
    END IF;
    IF options IS NULL OR pg_catalog.jsonb_typeof(options) OPERATOR(pg_catalog.<>) 'object' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'options must be a JSON object',
            HINT = 'For example ''{"time_column": "minute", "window": "1 minute", "series": ["page"]}''.';
    END IF;
    SELECT pg_catalog.string_agg(k, ', ') INTO unknown FROM pg_catalog.jsonb_object_keys(options) k
     WHERE k OPERATOR(pg_catalog.<>) ALL (ARRAY['time_column', 'series', 'window', 'lateness', 'alpha', 'threshold',
                                              'direction', 'warm_up', 'min_volume', 'min_stddev', 'missing_as_zero',
                                              'new_series', 'seasonality', 'season_warm_up', 'time_zone',
                                              'notify_channel', 'output']);
    IF unknown IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format('unknown detector option: %s', unknown),
            HINT = 'Options are time_column, series, window, lateness, alpha, threshold, direction, warm_up, min_volume, min_stddev, missing_as_zero, new_series, seasonality, season_warm_up, time_zone, notify_channel and output.';
    END IF;
    IF time_column IS NULL OR NOT options ? 'window' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'a detector needs the options time_column and window',
            HINT = 'time_column names the column holding each window''s start; window is the windows'' length, for example "1 minute".';
    END IF;
    IF NOT pg_catalog.has_table_privilege(source, 'SELECT') THEN
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
            MESSAGE = pg_catalog.format('permission denied to read table %s', source),
            HINT = 'A detector reads its table as its owner: you need SELECT on it.';
    END IF;
    t := pipeline.target_column_type(source, time_column);
    IF t NOT IN ('timestamp with time zone'::regtype, 'timestamp without time zone'::regtype) THEN
        RAISE EXCEPTION USING ERRCODE = 'datatype_mismatch',
            MESSAGE = pg_catalog.format('column "%s" must be a timestamp, not %s', time_column, t),
            HINT = 'time_column holds the start of each window.';
    END IF;
    t := pipeline.target_column_type(source, value_column);
    IF t NOT IN ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype, 'numeric'::regtype,
                 'real'::regtype, 'double precision'::regtype) THEN
        RAISE EXCEPTION USING ERRCODE = 'datatype_mismatch',
            MESSAGE = pg_catalog.format('column "%s" must be a number, not %s', value_column, t),
            HINT = 'A detector watches a count, a sum, an average or any other number per window.';
    END IF;
    IF options ? 'series' AND pg_catalog.jsonb_typeof(options->'series') OPERATOR(pg_catalog.<>) 'array' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'option "series" must be an array of column names',
            HINT = 'For example ''{"series": ["page", "status_class"]}''; leave it out for one series.';
    END IF;
    SELECT COALESCE(pg_catalog.array_agg(s ORDER BY n), '{}') INTO series
      FROM pg_catalog.jsonb_array_elements_text(COALESCE(options->'series', '[]')) WITH ORDINALITY AS e(s, n);
    FOREACH c IN ARRAY series LOOP
        PERFORM pipeline.target_column_type(source, c);
    END LOOP;
    BEGIN
        window_length := (options->>'window')::interval;
        lateness := COALESCE((options->>'lateness')::interval, '0');
    EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR interval_field_overflow THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format('invalid window or lateness: %s', SQLERRM),
            HINT = 'Give intervals such as "1 minute" or "30 seconds".';
    END;
    IF window_length OPERATOR(pg_catalog.<=) '0'::interval OR lateness OPERATOR(pg_catalog.<) '0'::interval
       OR pg_catalog.date_part('month', window_length) OPERATOR(pg_catalog.<>) 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format('window must be positive and lateness not negative, not %s and %s', window_length, lateness),
            HINT = 'A window is a fixed length of days, hours, minutes or seconds.';
    END IF;
    BEGIN
        alpha := COALESCE((options->>'alpha')::double precision, 0.1);
        threshold := COALESCE((options->>'threshold')::double precision, 4);
        warm_up := COALESCE((options->>'warm_up')::integer, 10);
        min_volume := COALESCE((options->>'min_volume')::double precision, 0);
        min_stddev := COALESCE((options->>'min_stddev')::double precision, 1);
        missing_as_zero := COALESCE((options->>'missing_as_zero')::boolean, true);
        season_warm_up := COALESCE((options->>'season_warm_up')::integer, 3);
    EXCEPTION WHEN invalid_text_representation OR numeric_value_out_of_range THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format('invalid detector option: %s', SQLERRM),
            HINT = 'alpha, threshold, min_volume and min_stddev are numbers, warm_up and season_warm_up integers, missing_as_zero a boolean.';
    END;
    IF seasonality OPERATOR(pg_catalog.<>) ALL (ARRAY['none', 'hour_of_day', 'hour_of_week']) OR season_warm_up OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format('invalid seasonality %s or season_warm_up %s', options->'seasonality', season_warm_up),
            HINT = 'seasonality is none, hour_of_day or hour_of_week (a baseline per hour, used once it has seen season_warm_up windows, at least 1).';
    END IF;
    PERFORM FROM pg_catalog.pg_timezone_names z WHERE z.name OPERATOR(pg_catalog.=) time_zone;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format('unknown time zone "%s"', time_zone),
            HINT = 'Name a time zone such as Europe/Paris or America/New_York: hours of the day and week are counted there.';
    END IF;
    IF NOT (alpha OPERATOR(pg_catalog.>) 0 AND alpha OPERATOR(pg_catalog.<=) 1) OR NOT threshold OPERATOR(pg_catalog.>) 0
       OR warm_up OPERATOR(pg_catalog.<) 1 OR NOT min_volume OPERATOR(pg_catalog.>=) 0 OR NOT min_stddev OPERATOR(pg_catalog.>) 0
       OR direction OPERATOR(pg_catalog.<>) ALL (ARRAY['both', 'spike', 'drop'])
       OR new_series OPERATOR(pg_catalog.<>) ALL (ARRAY['warm_up', 'population']) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'detector options out of range',
            HINT = 'alpha is in (0, 1], threshold and min_stddev positive, warm_up at least 1, min_volume not negative, direction both, spike or drop, new_series warm_up or population.';
    END IF;

    -- the name first (shared by all roles), the tables after: the source stands in until they exist
    BEGIN
        INSERT INTO pipeline.detectors (name, source, time_column, value_column, series_columns, window_length, lateness,
                                        alpha, threshold, direction, warm_up, min_volume, min_stddev, missing_as_zero,
                                        new_series, seasonality, season_warm_up, time_zone, notify_channel, alerts, state)
        VALUES (name, source, time_column, value_column, series, window_length, lateness, alpha, threshold, direction,
                warm_up, min_volume, min_stddev, missing_as_zero, new_series, seasonality, season_warm_up, time_zone,
                channel, source, source)
        RETURNING id INTO new_id;
    EXCEPTION WHEN unique_violation THEN
        RAISE EXCEPTION USING ERRCODE = 'duplicate_object',
            MESSAGE = pg_catalog.format('detector "%s" already exists', name),
            HINT = 'Detector names are shared by all roles: choose another name.';
    END;
    SELECT n.nspname INTO schema_name FROM pg_catalog.pg_class r
      JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) r.relnamespace
     WHERE r.oid OPERATOR(pg_catalog.=) source;
    BEGIN
        EXECUTE pg_catalog.format('CREATE TABLE %I.%I (alert_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, '
            'series jsonb NOT NULL, direction text NOT NULL, started_at timestamptz NOT NULL, last_window timestamptz NOT NULL, '
            'ended_at timestamptz, windows integer NOT NULL DEFAULT 1, observed double precision NOT NULL, '
            'expected double precision NOT NULL, stddev double precision NOT NULL, score double precision NOT NULL, '
            'status text NOT NULL DEFAULT ''open'', raised_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp())',
            schema_name, prefix OPERATOR(pg_catalog.||) '_alerts');
        alerts_table := pg_catalog.format('%I.%I', schema_name, prefix OPERATOR(pg_catalog.||) '_alerts')::regclass;
        EXECUTE pg_catalog.format('CREATE INDEX ON %s (started_at)', alerts_table);
        EXECUTE pg_catalog.format('CREATE TABLE %I.%I (series jsonb PRIMARY KEY, windows bigint NOT NULL, '
            'mean double precision NOT NULL, variance double precision NOT NULL, last_window timestamptz NOT NULL, '
            'open_alert bigint, season_windows bigint[], season_mean double precision[], season_variance double precision[])',
            schema_name, prefix OPERATOR(pg_catalog.||) '_baselines');
        state_table := pg_catalog.format('%I.%I', schema_name, prefix OPERATOR(pg_catalog.||) '_baselines')::regclass;
    EXCEPTION WHEN duplicate_table THEN
        RAISE EXCEPTION USING ERRCODE = 'duplicate_table',
            MESSAGE = pg_catalog.format('a table named like the outputs of detector "%s" already exists: %s', name, SQLERRM),
            HINT = 'Choose another detector name, or give the tables another prefix with the option output.';
    END;
    UPDATE pipeline.detectors d SET alerts = alerts_table, state = state_table WHERE d.id OPERATOR(pg_catalog.=) new_id;
    -- a statement trigger per event: transition tables allow only one
    EXECUTE pg_catalog.format('CREATE TRIGGER %I AFTER INSERT ON %s REFERENCING NEW TABLE AS pipeline_new '
                              'FOR EACH STATEMENT EXECUTE FUNCTION pipeline.detector_trigger(%L)',
        'pipeline_detector_' OPERATOR(pg_catalog.||) new_id OPERATOR(pg_catalog.||) '_insert', source, new_id);
    EXECUTE pg_catalog.format('CREATE TRIGGER %I AFTER UPDATE ON %s REFERENCING NEW TABLE AS pipeline_new '
                              'FOR EACH STATEMENT EXECUTE FUNCTION pipeline.detector_trigger(%L)',
        'pipeline_detector_' OPERATOR(pg_catalog.||) new_id OPERATOR(pg_catalog.||) '_update', source, new_id);
    RETURN alerts_table;
END
$$;
COMMENT ON FUNCTION pipeline.create_detector(text, regclass, text, jsonb) IS
    'watches a number per window and series of a table (a continuous aggregate''s output, say): scores each closed window against an online baseline and raises one alert per incident in <name>_alerts; returns that table';
REVOKE ALL ON FUNCTION pipeline.create_detector(text, regclass, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.create_detector(text, regclass, text, jsonb) TO PUBLIC;

CREATE FUNCTION pipeline.drop_detector(name text, keep_tables boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    d pipeline.detectors;
    t regclass;
BEGIN
    SELECT * INTO d FROM pipeline.detectors x WHERE x.name OPERATOR(pg_catalog.=) name;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'undefined_object',
            MESSAGE = pg_catalog.format('detector "%s" does not exist', name),
            HINT = 'SELECT name FROM pipeline.detector_status lists the detectors you own.';
    END IF;
    IF EXISTS (SELECT FROM pg_catalog.pg_class r WHERE r.oid OPERATOR(pg_catalog.=) d.source) THEN
        EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS %I ON %s',
            'pipeline_detector_' OPERATOR(pg_catalog.||) d.id OPERATOR(pg_catalog.||) '_insert', d.source);
        EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS %I ON %s',
            'pipeline_detector_' OPERATOR(pg_catalog.||) d.id OPERATOR(pg_catalog.||) '_update', d.source);
    END IF;
    IF NOT keep_tables THEN
        FOR t IN SELECT r.oid::regclass FROM pg_catalog.pg_class r
                  WHERE r.oid OPERATOR(pg_catalog.=) ANY (ARRAY[d.alerts, d.state]::oid[]) LOOP
            EXECUTE pg_catalog.format('DROP TABLE %s', t);
        END LOOP;
    END IF;
    DELETE FROM pipeline.detectors x WHERE x.id OPERATOR(pg_catalog.=) d.id;
END
$$;
COMMENT ON FUNCTION pipeline.drop_detector(text, boolean) IS
    'drops an anomaly detector and its tables (unless keep_tables)';
REVOKE ALL ON FUNCTION pipeline.drop_detector(text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.drop_detector(text, boolean) TO PUBLIC;

CREATE VIEW pipeline.detector_status WITH (security_invoker = true) AS
SELECT d.name,
       d.source,
       d.value_column,
       d.series_columns,
       d.window_length,
       d.closed_until,
       d.alerts,
       d.state AS baselines,
       d.notify_channel
  FROM pipeline.detectors d;
COMMENT ON VIEW pipeline.detector_status IS
    'one row per anomaly detector you own: what it watches, its tables, and the windows it has scored (before closed_until)';
REVOKE ALL ON pipeline.detector_status FROM PUBLIC;
GRANT SELECT ON pipeline.detector_status TO PUBLIC;

-- Web traffic: a generator with injected incidents, and a browser classifier

CREATE FUNCTION pipeline.simulate_web_traffic_events(
    minutes integer, events_per_minute integer, seed bigint, start_time timestamptz,
    kinds text[], pages text[], client_ips text[], starts integer[], lengths integer[], sizes double precision[])
RETURNS TABLE (event_time timestamptz, page text, user_id bigint, client_ip text, country text, user_agent text,
               status integer, latency_ms double precision, bytes integer)
LANGUAGE c STRICT
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pipeline_simulate_web_traffic';
COMMENT ON FUNCTION pipeline.simulate_web_traffic_events(integer, integer, bigint, timestamptz, text[], text[], text[], integer[], integer[], double precision[]) IS
    'the generator behind pipeline.simulate_web_traffic, with the incidents as checked arrays';
REVOKE ALL ON FUNCTION pipeline.simulate_web_traffic_events(integer, integer, bigint, timestamptz, text[], text[], text[], integer[], integer[], double precision[]) FROM PUBLIC;

CREATE FUNCTION pipeline.simulate_web_traffic(
    minutes integer DEFAULT 180, events_per_minute integer DEFAULT 1000, seed bigint DEFAULT 0,
    start_time timestamptz DEFAULT '2026-01-05 00:00:00+00', incidents jsonb DEFAULT '[]')
RETURNS TABLE (event_time timestamptz, page text, user_id bigint, client_ip text, country text, user_agent text,
               status integer, latency_ms double precision, bytes integer)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    i jsonb;
    kinds text[] := '{}';
    pages text[] := '{}';
    ips text[] := '{}';
    starts integer[] := '{}';
    lengths integer[] := '{}';
    sizes double precision[] := '{}';
    kind text;
    size double precision;
BEGIN
    IF minutes IS NULL OR minutes NOT BETWEEN 1 AND 527040 OR events_per_minute IS NULL
       OR events_per_minute NOT BETWEEN 0 AND 10000000 OR seed IS NULL OR start_time IS NULL
       OR NOT pg_catalog.isfinite(start_time) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'minutes, events_per_minute, seed or start_time is out of range',
            HINT = 'Simulate 1 to 527,040 minutes (a year) at 0 to 10,000,000 events a minute, from a finite start time.';
    END IF;
    IF incidents IS NULL OR pg_catalog.jsonb_typeof(incidents) OPERATOR(pg_catalog.<>) 'array' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'incidents must be a JSON array',
            HINT = 'For example ''[{"kind": "error_spike", "page": "/checkout", "start_minute": 60, "minutes": 5, "size": 0.3}]''.';
    END IF;
    FOR i IN SELECT e FROM pg_catalog.jsonb_array_elements(incidents) e LOOP
        kind := i->>'kind';
        IF pg_catalog.jsonb_typeof(i) OPERATOR(pg_catalog.<>) 'object'
           OR kind IS NULL OR kind OPERATOR(pg_catalog.<>) ALL (ARRAY['error_spike', 'traffic_drop', 'bot_burst'])
           OR pg_catalog.jsonb_typeof(i->'start_minute') OPERATOR(pg_catalog.<>) 'number'
           OR pg_catalog.jsonb_typeof(i->'minutes') OPERATOR(pg_catalog.<>) 'number'
           OR pg_catalog.jsonb_typeof(i->'size') OPERATOR(pg_catalog.<>) 'number' THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = pg_catalog.format('invalid incident %s', i),
                HINT = 'An incident has a kind (error_spike, traffic_drop or bot_burst), a start_minute, minutes and a size; optionally a page (error_spike, traffic_drop) or a client_ip (bot_burst).';
        END IF;
        size := (i->>'size')::double precision;
        IF (kind OPERATOR(pg_catalog.=) 'bot_burst' AND size NOT BETWEEN 0 AND 1000000)
           OR (kind OPERATOR(pg_catalog.<>) 'bot_burst' AND size NOT BETWEEN 0 AND 1)
           OR (i->>'minutes')::numeric OPERATOR(pg_catalog.<) 0 THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = pg_catalog.format('incident size or length out of range: %s', i),
                HINT = 'The size of an error_spike or a traffic_drop is a share between 0 and 1; of a bot_burst, requests a minute.';
        END IF;
        kinds := kinds OPERATOR(pg_catalog.||) kind;
        pages := pages OPERATOR(pg_catalog.||) (i->>'page');
        ips := ips OPERATOR(pg_catalog.||) (i->>'client_ip');
        starts := starts OPERATOR(pg_catalog.||) (i->>'start_minute')::integer;
        lengths := lengths OPERATOR(pg_catalog.||) (i->>'minutes')::integer;
        sizes := sizes OPERATOR(pg_catalog.||) size;
    END LOOP;
    RETURN QUERY SELECT * FROM pipeline.simulate_web_traffic_events(minutes, events_per_minute, seed, start_time,
                                                                     kinds, pages, ips, starts, lengths, sizes);
END
$$;
COMMENT ON FUNCTION pipeline.simulate_web_traffic(integer, integer, bigint, timestamptz, jsonb) IS
    'simulated page views in time order (daily rhythm, popular and rare pages, users with an address, country and browser), with injected incidents: error_spike, traffic_drop, bot_burst (seeded)';
REVOKE ALL ON FUNCTION pipeline.simulate_web_traffic(integer, integer, bigint, timestamptz, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.simulate_web_traffic(integer, integer, bigint, timestamptz, jsonb) TO PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.simulate_web_traffic_events(integer, integer, bigint, timestamptz, text[], text[], text[], integer[], integer[], double precision[]) TO PUBLIC;

CREATE FUNCTION pipeline.user_agent_family(user_agent text)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN CASE
    WHEN user_agent OPERATOR(pg_catalog.~*) '(bot|crawler|spider|slurp|python-requests|curl/|wget/|go-http-client|java/)' THEN 'bot'
    WHEN pg_catalog.strpos(user_agent, 'Edg/') OPERATOR(pg_catalog.>) 0 THEN 'Edge'
    WHEN pg_catalog.strpos(user_agent, 'Firefox/') OPERATOR(pg_catalog.>) 0 THEN 'Firefox'
    WHEN pg_catalog.strpos(user_agent, 'Chrome/') OPERATOR(pg_catalog.>) 0 THEN 'Chrome'
    WHEN pg_catalog.strpos(user_agent, 'Safari/') OPERATOR(pg_catalog.>) 0 THEN 'Safari'
    ELSE 'other' END;
COMMENT ON FUNCTION pipeline.user_agent_family(text) IS
    'the browser family of a User-Agent string: bot, Edge, Firefox, Chrome, Safari or other';
REVOKE ALL ON FUNCTION pipeline.user_agent_family(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline.user_agent_family(text) TO PUBLIC;
