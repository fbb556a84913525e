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
    OUT started_at pg_catalog.timestamptz)
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
