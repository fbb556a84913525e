-- pipeline.workers: the launcher and this database's supervisor.
\d pipeline.workers

-- the supervisor starts within a few seconds of CREATE EXTENSION
DO $$
BEGIN
  FOR i IN 1..100 LOOP
    EXIT WHEN EXISTS (SELECT FROM pipeline.workers
                       WHERE kind = 'supervisor' AND database = current_database());
    PERFORM pg_sleep(0.1);
  END LOOP;
END $$;

SELECT kind, database, state, pid > 0 AS has_pid, started_at <= now() AS started
  FROM pipeline.workers
 WHERE database IS NULL OR database = current_database()
 ORDER BY kind;

-- the view is read-only
DELETE FROM pipeline.workers;
