-- pipeline.workers: the launcher and this database's supervisor.
\d pipeline.workers

-- the supervisor starts within a few seconds of CREATE EXTENSION, and
-- with nothing to do it is idle (it is "starting" until it has connected)
DO $$
BEGIN
  FOR i IN 1..100 LOOP
    EXIT WHEN EXISTS (SELECT FROM pipeline.workers
                       WHERE kind = 'supervisor' AND database = current_database() AND state = 'idle');
    PERFORM pg_sleep(0.1);
  END LOOP;
END $$;

SELECT kind, database, state, pid > 0 AS has_pid, started_at <= now() AS started
  FROM pipeline.workers
 WHERE database IS NULL OR database = current_database()
 ORDER BY kind;

-- the view is read-only
DELETE FROM pipeline.workers;
