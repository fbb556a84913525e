-- Launcher and supervisors: appear, restart, disappear with the extension.
-- Statements commit one by one: background workers cannot see uncommitted work.
\unset ECHO
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
\set ON_ERROR_STOP 1
SET client_min_messages = warning;

\ir include/wait_for.sql

CREATE FUNCTION pg_temp.supervisor_pid(db name) RETURNS int LANGUAGE sql AS $$
  SELECT pid FROM pg_stat_activity
   WHERE backend_type = 'pg_pipeline supervisor' AND datname = db
$$;

SELECT plan(16);

CREATE EXTENSION pg_pipeline;

SELECT ok(pg_temp.wait_for($$EXISTS (SELECT FROM pipeline.workers
                                      WHERE kind = 'supervisor' AND database = current_database())$$,
                           '5 s'),
          'a supervisor appears in pipeline.workers within 5 s of CREATE EXTENSION');
SELECT is((SELECT count(*)::int FROM pipeline.workers
            WHERE kind = 'supervisor' AND database = current_database()),
          1, 'exactly one supervisor per database');
SELECT is((SELECT state FROM pipeline.workers
            WHERE kind = 'supervisor' AND database = current_database()),
          'idle', 'the supervisor reports its state');
SELECT is((SELECT pid FROM pipeline.workers
            WHERE kind = 'supervisor' AND database = current_database()),
          pg_temp.supervisor_pid(current_database()),
          'pipeline.workers shows the pid pg_stat_activity has');
SELECT is((SELECT count(*)::int FROM pipeline.workers WHERE kind = 'launcher' AND database IS NULL),
          1, 'one launcher, connected to no database');
SELECT is((SELECT datname FROM pg_stat_activity WHERE backend_type = 'pg_pipeline launcher'),
          NULL, 'the launcher holds no database connection (DROP DATABASE is never blocked)');

-- a terminated supervisor is restarted
CREATE TEMP TABLE killed AS SELECT pg_temp.supervisor_pid(current_database()) AS pid;
SELECT ok(pg_terminate_backend((SELECT pid FROM killed)), 'pg_terminate_backend ends the supervisor');
SELECT ok(pg_temp.wait_for($$pg_temp.supervisor_pid(current_database()) IS NOT NULL
                             AND pg_temp.supervisor_pid(current_database()) <> (SELECT pid FROM killed)$$,
                           '10 s'),
          'a terminated supervisor is back within seconds');

-- DROP EXTENSION stops it, CREATE EXTENSION brings it back
DROP EXTENSION pg_pipeline;
SELECT ok(pg_temp.wait_for($$pg_temp.supervisor_pid(current_database()) IS NULL$$, '5 s'),
          'the supervisor disappears within 5 s of DROP EXTENSION');
SELECT pg_sleep(1.5);
SELECT is(pg_temp.supervisor_pid(current_database()), NULL,
          'and is not restarted while the extension is absent');
CREATE EXTENSION pg_pipeline;
SELECT ok(pg_temp.wait_for($$pg_temp.supervisor_pid(current_database()) IS NOT NULL$$, '5 s'),
          'it comes back within 5 s of CREATE EXTENSION');

-- a transaction that rolls back changes nothing
DROP EXTENSION pg_pipeline;
SELECT ok(pg_temp.wait_for($$pg_temp.supervisor_pid(current_database()) IS NULL$$, '5 s'),
          'gone again after DROP EXTENSION');
BEGIN;
CREATE EXTENSION pg_pipeline;
ROLLBACK;
SELECT pg_sleep(1.5);
SELECT is(pg_temp.supervisor_pid(current_database()), NULL,
          'a rolled-back CREATE EXTENSION starts no supervisor');
CREATE EXTENSION pg_pipeline;
SELECT ok(pg_temp.wait_for($$pg_temp.supervisor_pid(current_database()) IS NOT NULL$$, '5 s'),
          'a committed one does');

-- a database without the extension gets no worker (pipeline_noext is made by test/suites)
SELECT ok(pg_temp.wait_for($$pg_temp.supervisor_pid('pipeline_noext') IS NULL$$, '5 s')
          AND pg_sleep(1.5) IS NOT NULL
          AND pg_temp.supervisor_pid('pipeline_noext') IS NULL,
          'a database without the extension has no supervisor');
SELECT is((SELECT count(*)::int FROM pipeline.workers WHERE database = 'pipeline_noext'),
          0, 'and none in pipeline.workers');

SELECT * FROM finish();
DROP EXTENSION pg_pipeline;
