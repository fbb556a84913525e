-- Jobs: definition, validation and ownership.  (Running them is tested on a
-- live cluster in test/integration/scheduler.sh.)
\set SHOW_CONTEXT never
CREATE ROLE job_owner LOGIN;
CREATE ROLE job_other LOGIN;
CREATE ROLE job_nologin;
SET ROLE job_owner;
SELECT pipeline.schedule_job('nightly', '0 3 * * *', 'SELECT 1',
    '{"time_zone": "Europe/Paris", "timeout": "10 minutes", "max_attempts": 3, "retry_delay": "1 minute"}') > 0 AS created;
SELECT pipeline.schedule_job('manual', NULL, 'SELECT 2') > 0 AS created;
SELECT name, owner, schedule, command, time_zone, enabled, timeout, max_attempts, retry_delay, max_retry_delay,
       overlap, catch_up, catch_up_window, atomic
  FROM pipeline.jobs ORDER BY name;
SELECT job, schedule, time_zone, enabled, next_run IS NOT NULL AS has_next_run, last_state
  FROM pipeline.job_status ORDER BY job;
SELECT pipeline.pause_job('nightly');
SELECT job, enabled, next_run FROM pipeline.job_status WHERE job = 'nightly';
SELECT pipeline.resume_job('nightly');
SELECT pipeline.run_job('manual') > 0 AS queued;
SELECT trigger, attempt FROM pipeline.job_runs;  -- the supervisor runs it at once
SELECT * FROM pipeline.run_context();   -- outside a job: NULLs

-- errors
SELECT pipeline.pause_job('nightly');   -- keep the backfill below from running
SELECT pipeline.schedule_job('nightly', '@daily', 'SELECT 1');
SELECT pipeline.schedule_job('', '@daily', 'SELECT 1');
SELECT pipeline.schedule_job('x', '@daily', ' ');
SELECT pipeline.schedule_job('x', '61 * * * *', 'SELECT 1');
SELECT pipeline.schedule_job('x', '@daily', 'SELECT 1', '{"time_zone": "Nowhere/Land"}');
SELECT pipeline.schedule_job('x', '@daily', 'SELECT 1', '{"timeout": "0 seconds"}');
SELECT pipeline.schedule_job('x', '@daily', 'SELECT 1', '{"retry_delay": "often"}');
SELECT pipeline.schedule_job('x', '@daily', 'SELECT 1', '{"max_attempts": 0}');
SELECT pipeline.schedule_job('x', '@daily', 'SELECT 1', '{"retries": 3}');
SELECT pipeline.schedule_job('x', '@daily', 'SELECT 1', '[]');
SELECT pipeline.schedule_job('x', '@daily', 'SELECT 1', '{"atomic": "no"}');
SELECT pipeline.schedule_job('x', '@daily', 'SELECT 1', '{"overlap": "sometimes"}');
SELECT pipeline.schedule_job('x', '@daily', 'SELECT 1', '{"catch_up": "some"}');
SELECT pipeline.schedule_job('x', '@daily', 'SELECT 1', '{"catch_up_window": "-1 day"}');
SELECT pipeline.run_job('nope');
SELECT pipeline.unschedule_job('nope');
SELECT pipeline.schedule_job('x', '@daily', 'SELECT 1', '{"catch_up_window": "300000 years"}');
SELECT pipeline.schedule_job('x', '@daily', 'SELECT 1', '{"timeout": "30 days"}');
-- the catalog checks what is written to it directly, too
UPDATE pipeline.jobs SET schedule = '@every x' WHERE name = 'nightly';
UPDATE pipeline.jobs SET time_zone = 'Nowhere/Land' WHERE name = 'nightly';
-- @once is stored as an absolute time, read in the job's time zone
SELECT pipeline.schedule_job('once', '@once 2027-01-13 09:00', 'SELECT 1', '{"time_zone": "Asia/Tokyo"}') > 0 AS created;
SELECT schedule FROM pipeline.jobs WHERE name = 'once';
SELECT pipeline.unschedule_job('once');

-- graphs: a job can depend only on jobs that exist, so a graph has no cycle
SELECT pipeline.schedule_job('after', NULL, 'SELECT 1', '{"depends_on": ["nightly", "manual"]}') > 0 AS created;
SELECT job, depends_on FROM pipeline.job_status WHERE job = 'after';
SELECT pipeline.schedule_job('loop', NULL, 'SELECT 1', '{"depends_on": ["loop"]}');
SELECT pipeline.schedule_job('x', '@daily', 'SELECT 1', '{"depends_on": ["nightly"]}');
SELECT pipeline.schedule_job('x', NULL, 'SELECT 1', '{"depends_on": []}');
SELECT pipeline.schedule_job('x', NULL, 'SELECT 1', '{"depends_on": "nightly"}');
SELECT pipeline.unschedule_job('nightly');
SELECT pipeline.backfill_job('nightly', '2026-11-01', '2026-11-03');
SELECT pipeline.backfill_job('manual', '2026-11-01', '2026-11-03');
SELECT pipeline.backfill_job('nightly', '2026-11-03', '2026-11-01');
SELECT pipeline.unschedule_job('after');

-- another role sees and changes none of them
SET ROLE job_other;
SELECT count(*) FROM pipeline.jobs;
SELECT count(*) FROM pipeline.job_runs;
SELECT count(*) FROM pipeline.job_status;
SELECT pipeline.run_job('nightly');
SELECT pipeline.pause_job('nightly');
UPDATE pipeline.jobs SET command = 'DROP TABLE x';
-- nor can it queue or block another role's jobs
INSERT INTO pipeline.job_runs (job_id, owner, scheduled_for, attempt, due_at, trigger, state)
SELECT max(id), 'job_other', now(), 1, now(), 'manual', 'running' FROM pipeline.jobs;
INSERT INTO pipeline.job_runs (job_id, owner, scheduled_for, attempt, due_at, trigger, state)
VALUES ((SELECT pipeline.job_id('nightly')), 'job_other', now(), 1, now(), 'manual', 'running');
-- roles that cannot log in cannot own jobs (a worker connects as the owner)
SET ROLE job_nologin;
SELECT pipeline.schedule_job('x', '@daily', 'SELECT 1');
-- nor superusers, unless allowed
RESET ROLE;
SELECT pipeline.schedule_job('x', '@daily', 'SELECT 1');

SET ROLE job_owner;
SELECT pipeline.unschedule_job('nightly');
SELECT pipeline.unschedule_job('manual');
SELECT count(*) AS jobs, (SELECT count(*) FROM pipeline.job_runs) AS runs FROM pipeline.jobs;
RESET ROLE;
DROP ROLE job_owner;
DROP ROLE job_other;
DROP ROLE job_nologin;
