-- Shared by the pgTAP files (\ir include/wait_for.sql).
-- true as soon as condition holds, false once timeout has passed
CREATE FUNCTION pg_temp.wait_for(condition text, timeout interval)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
  deadline timestamptz := clock_timestamp() + timeout;
  result boolean;
BEGIN
  LOOP
    PERFORM pg_stat_clear_snapshot();
    EXECUTE 'SELECT (' || condition || ')' INTO result;
    IF result THEN RETURN true; END IF;
    IF clock_timestamp() > deadline THEN RETURN false; END IF;
    PERFORM pg_sleep(0.05);
  END LOOP;
END $$;
