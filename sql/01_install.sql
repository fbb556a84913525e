-- Installing the extension: its fixed schema, its objects, their safety.
CREATE EXTENSION pg_pipeline;

SELECT extname, extversion, extrelocatable, extnamespace::regnamespace
  FROM pg_extension WHERE extname = 'pg_pipeline';

-- every object the extension owns
SELECT pg_describe_object(classid, objid, 0) AS object
  FROM pg_depend
 WHERE refclassid = 'pg_extension'::regclass
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_pipeline')
   AND deptype = 'e'
 ORDER BY 1;

-- every function pins its search_path, so callers cannot hijack it
SELECT p.oid::regprocedure AS function, p.proconfig
  FROM pg_proc p
 WHERE p.pronamespace = 'pipeline'::regnamespace
 ORDER BY p.oid::regprocedure::text;

-- every user-facing object is documented
SELECT c.oid::regclass AS relation
  FROM pg_class c
 WHERE c.relnamespace = 'pipeline'::regnamespace
   AND c.relkind IN ('r', 'v')
   AND obj_description(c.oid, 'pg_class') IS NULL;
SELECT p.oid::regprocedure AS function
  FROM pg_proc p
 WHERE p.pronamespace = 'pipeline'::regnamespace
   AND obj_description(p.oid, 'pg_proc') IS NULL;

-- what PUBLIC may do
SELECT has_schema_privilege('public', 'pipeline', 'USAGE') AS schema_usage,
       has_schema_privilege('public', 'pipeline', 'CREATE') AS schema_create,
       has_table_privilege('public', 'pipeline.workers', 'SELECT') AS workers_select,
       has_table_privilege('public', 'pipeline.workers', 'INSERT') AS workers_insert;
SELECT c.oid::regclass AS relation,
       has_table_privilege('public', c.oid, 'SELECT') AS "select",
       has_table_privilege('public', c.oid, 'INSERT') AS "insert",
       has_table_privilege('public', c.oid, 'UPDATE') AS "update",
       has_table_privilege('public', c.oid, 'DELETE') AS "delete",
       c.relrowsecurity AS row_security
  FROM pg_class c
 WHERE c.relnamespace = 'pipeline'::regnamespace AND c.relkind IN ('r', 'v')
 ORDER BY c.oid::regclass::text;
SELECT p.oid::regprocedure AS function
  FROM pg_proc p
 WHERE p.pronamespace = 'pipeline'::regnamespace
   AND NOT has_function_privilege('public', p.oid, 'EXECUTE')
 ORDER BY p.oid::regprocedure::text;

-- the schema is not relocatable and cannot be pre-planted
ALTER EXTENSION pg_pipeline SET SCHEMA public;
DROP EXTENSION pg_pipeline;
CREATE SCHEMA pipeline;
CREATE EXTENSION pg_pipeline;
DROP SCHEMA pipeline;
CREATE EXTENSION pg_pipeline;
