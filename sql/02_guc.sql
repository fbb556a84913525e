-- Configuration parameters live under the reserved prefix pg_pipeline.
SELECT name, setting, unit, context, vartype, short_desc
  FROM pg_settings
 WHERE name LIKE 'pg_pipeline.%'
 ORDER BY name;

-- a misspelt parameter is an error, not a silent placeholder
SET pg_pipeline.enabeld = off;

-- values are checked
SET pg_pipeline.restart_backoff_max = '10ms';

-- both are server-wide (reloaded with SIGHUP), not per session
SET pg_pipeline.enabled = off;
