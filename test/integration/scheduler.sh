# Jobs on a live cluster: a job every second starts within 100 ms of its
# time; failures are retried with exponential backoff, timeouts cancel,
# failures are notified; a run cut by an immediate shutdown is retried
# exactly once after the restart; a job runs with its owner's rights only.
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/tap.sh
. test/lib/pg.sh

plan 27
db=jobs_test
fresh_database $db >/dev/null
q "DROP ROLE IF EXISTS jobber" >/dev/null 2>&1
q "CREATE ROLE jobber LOGIN" >/dev/null
q $db "CREATE TABLE ticks (run_id bigint, scheduled_for timestamptz, at timestamptz DEFAULT clock_timestamp());
       CREATE TABLE done (attempt int);
       CREATE TABLE secret (x int);
       CREATE TABLE steps (job text, day date, at timestamptz DEFAULT clock_timestamp());
       CREATE TABLE fixed (ok int);
       CREATE TABLE log (step text);
       CREATE PROCEDURE two_steps() LANGUAGE plpgsql AS \$\$
         BEGIN INSERT INTO log VALUES ('one'); COMMIT; INSERT INTO log VALUES ('two'); COMMIT; END \$\$;
       GRANT INSERT, SELECT ON ticks, done, steps, fixed, log TO jobber"
as_jobber() { psql -X -q -At -v ON_ERROR_STOP=1 -d $db -c "SET ROLE jobber" -c "$1"; }

# every second
as_jobber "SELECT pipeline.schedule_job('tick', '* * * * * *',
  \$\$INSERT INTO ticks (run_id, scheduled_for) SELECT run_id, scheduled_for FROM pipeline.run_context()\$\$)" >/dev/null
sleep 6
as_jobber "SELECT pipeline.pause_job('tick')" >/dev/null
is "$(q $db "SELECT count(*) >= 4 FROM ticks")" t "a job scheduled every second runs every second"
is "$(q $db "SELECT count(*) = count(DISTINCT scheduled_for) FROM ticks")" t "each second's occurrence runs once"
latency=$(q $db "SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - scheduled_for) * 1000)::int
                   FROM pipeline.job_runs r JOIN pipeline.jobs j ON j.id = r.job_id WHERE j.name = 'tick' AND r.state = 'succeeded'")
diag "start latency from scheduled time, median: $latency ms"
[ -n "$latency" ] && [ "$latency" -lt 100 ]
ok $? "it starts within 100 ms of its time (median $latency ms)"

# retries with exponential backoff, and a notification for each failure
psql -X -d $db -c "LISTEN pipeline_job_failed" -c "SELECT pg_sleep(6)" >"${TMPDIR:-/tmp}/notify.$$" 2>&1 &
listener=$!
sleep 0.5
as_jobber "SELECT pipeline.schedule_job('fails', NULL, 'SELECT 1 / 0', '{\"max_attempts\": 3, \"retry_delay\": \"1 second\"}')" >/dev/null
as_jobber "SELECT pipeline.run_job('fails')" >/dev/null
wait_for_sql 20 $db "SELECT count(*) = 3 FROM pipeline.job_runs r JOIN pipeline.jobs j ON j.id = r.job_id WHERE j.name = 'fails' AND r.state = 'failed'"
is "$(q $db "SELECT string_agg(attempt || ':' || trigger || ':' || state || ':' || sqlstate, ' ' ORDER BY attempt)
               FROM pipeline.job_runs r JOIN pipeline.jobs j ON j.id = r.job_id WHERE j.name = 'fails'")" \
	"1:manual:failed:22012 2:retry:failed:22012 3:retry:failed:22012" "a failing job is tried max_attempts times, then stops"
is "$(q $db "SELECT bool_and(gap >= expected) FROM (
               SELECT started_at - lag(finished_at) OVER (ORDER BY attempt) AS gap,
                      interval '1 second' * power(2, attempt - 2) AS expected
                 FROM pipeline.job_runs r JOIN pipeline.jobs j ON j.id = r.job_id WHERE j.name = 'fails') g
              WHERE gap IS NOT NULL")" t "retries wait 1 s, then 2 s (exponential backoff)"
wait "$listener"
is "$(grep -c 'Asynchronous notification "pipeline_job_failed"' "${TMPDIR:-/tmp}/notify.$$")" 3 \
	"each failure is notified on channel pipeline_job_failed"
rm -f "${TMPDIR:-/tmp}/notify.$$"

# a timeout cancels the run
as_jobber "SELECT pipeline.schedule_job('slow', NULL, 'SELECT pg_sleep(10)', '{\"timeout\": \"1 second\"}')" >/dev/null
as_jobber "SELECT pipeline.run_job('slow')" >/dev/null
wait_for_sql 10 $db "SELECT state = 'timed_out' FROM pipeline.job_runs r JOIN pipeline.jobs j ON j.id = r.job_id WHERE j.name = 'slow'"
ok $? "a run past its timeout is cancelled and recorded as timed_out"

# a command that ignores the cancel is terminated after a grace period
as_jobber "SELECT pipeline.schedule_job('stubborn', NULL, \$cmd\$DO \$d\$ BEGIN
    BEGIN PERFORM pg_sleep(30); EXCEPTION WHEN query_canceled THEN PERFORM pg_sleep(30); END;
  END \$d\$\$cmd\$, '{\"timeout\": \"1 second\"}')" >/dev/null
as_jobber "SELECT pipeline.run_job('stubborn')" >/dev/null
wait_for_sql 20 $db "SELECT state = 'timed_out' AND error LIKE 'terminated%' AND finished_at - started_at < interval '15 seconds'
                     FROM pipeline.job_runs r JOIN pipeline.jobs j ON j.id = r.job_id WHERE j.name = 'stubborn'"
ok $? "a run that ignores its timeout's cancel is terminated 10 s later"

# the owner's rights, nothing more
as_jobber "SELECT pipeline.schedule_job('snoop', NULL, 'INSERT INTO secret VALUES (1)')" >/dev/null
as_jobber "SELECT pipeline.run_job('snoop')" >/dev/null
wait_for_sql 10 $db "SELECT state = 'failed' FROM pipeline.job_runs r JOIN pipeline.jobs j ON j.id = r.job_id WHERE j.name = 'snoop'"
is "$(q $db "SELECT sqlstate || ' ' || error FROM pipeline.job_runs r JOIN pipeline.jobs j ON j.id = r.job_id WHERE j.name = 'snoop'")" \
	"42501 permission denied for table secret" "a job without the right fails with the permission error in its history"
is "$(q $db "SELECT count(*) FROM secret")" 0 "and wrote nothing"

# a three-step nightly graph, backfilled over three days: each day's steps in order
step() { echo "INSERT INTO steps (job, day) SELECT '$1', (scheduled_for AT TIME ZONE 'UTC')::date FROM pipeline.run_context()"; }
as_jobber "SELECT pipeline.schedule_job('import', '0 2 * * *', \$\$$(step import)\$\$)" >/dev/null
as_jobber "SELECT pipeline.schedule_job('clean', NULL, \$\$$(step clean)\$\$, '{\"depends_on\": [\"import\"]}')" >/dev/null
as_jobber "SELECT pipeline.schedule_job('report', NULL, \$\$$(step report)\$\$, '{\"depends_on\": [\"clean\"]}')" >/dev/null
is "$(as_jobber "SELECT pipeline.backfill_job('import', '2026-11-01', '2026-11-03 23:59')")" 3 "a backfill queues the three days' occurrences"
wait_for_sql 30 $db "SELECT count(*) = 9 FROM steps"
is "$(q $db "SELECT string_agg(day || ':' || jobs, ' ' ORDER BY day) FROM (
               SELECT day, string_agg(job, ',' ORDER BY at) AS jobs FROM steps GROUP BY day) d")" \
	"2026-11-01:import,clean,report 2026-11-02:import,clean,report 2026-11-03:import,clean,report" \
	"each day runs import, then clean, then report, with that day as its logical time"

# a failed step: the steps after it are upstream_failed; a rerun after the fix resumes the graph
as_jobber "SELECT pipeline.schedule_job('check', NULL, 'SELECT 1 / (SELECT count(*) FROM fixed)::int', '{\"depends_on\": [\"report\"]}')" >/dev/null
as_jobber "SELECT pipeline.schedule_job('publish', NULL, \$\$$(step publish)\$\$, '{\"depends_on\": [\"check\"]}')" >/dev/null
as_jobber "SELECT pipeline.schedule_job('archive', NULL, \$\$$(step archive)\$\$, '{\"depends_on\": [\"publish\"]}')" >/dev/null
as_jobber "SELECT pipeline.backfill_job('import', '2026-11-04', '2026-11-04 23:59')" >/dev/null
wait_for_sql 30 $db "SELECT count(*) = 2 FROM pipeline.job_runs WHERE state = 'upstream_failed'"
is "$(q $db "SELECT string_agg(j.name || ':' || r.state, ' ' ORDER BY j.id) FROM pipeline.job_runs r JOIN pipeline.jobs j ON j.id = r.job_id
               WHERE r.scheduled_for = '2026-11-04 02:00+00' AND j.name IN ('check', 'publish', 'archive')")" \
	"check:failed publish:upstream_failed archive:upstream_failed" "a failed step marks every step after it upstream_failed"
q $db "INSERT INTO fixed VALUES (1)" >/dev/null
as_jobber "SELECT pipeline.rerun_job('check', '2026-11-04 02:00+00')" >/dev/null
wait_for_sql 30 $db "SELECT count(*) = 1 FROM steps WHERE job = 'archive'"
is "$(q $db "SELECT string_agg(job || ':' || day, ' ' ORDER BY at) FROM steps WHERE job IN ('publish', 'archive')")" \
	"publish:2026-11-04 archive:2026-11-04" "rerunning the failed step after the fix runs the rest of the graph for that day"
is "$(as_jobber "SELECT pipeline.unschedule_job('report')" 2>&1 | grep -c 'jobs depend on job "report"')" 1 \
	"a job others depend on cannot be unscheduled"
q $db "UPDATE pipeline.jobs SET depends_on = '{}'" >/dev/null

# a procedure that commits as it goes runs in a job that is not atomic
as_jobber "SELECT pipeline.schedule_job('proc', NULL, 'CALL public.two_steps()', '{\"atomic\": false}')" >/dev/null
as_jobber "SELECT pipeline.run_job('proc')" >/dev/null
wait_for_sql 10 $db "SELECT state = 'succeeded' FROM pipeline.job_runs r JOIN pipeline.jobs j ON j.id = r.job_id WHERE j.name = 'proc'"
is "$(q $db "SELECT string_agg(step, ',' ORDER BY step) FROM log")" "one,two" "CALL of a procedure that commits runs in a job with atomic false"

# a dropped owner disables its jobs instead of breaking anything
q "DROP ROLE IF EXISTS leaver" >/dev/null 2>&1
q "CREATE ROLE leaver LOGIN" >/dev/null
psql -X -q -d $db -c "SET ROLE leaver" -c "SELECT pipeline.schedule_job('orphan', '@every 2 seconds', 'SELECT 1')" >/dev/null
q "DROP ROLE leaver" >/dev/null
wait_for_sql 10 $db "SELECT NOT enabled FROM pipeline.jobs WHERE name = 'orphan'"
ok $? "the jobs of a dropped owner are disabled"
has_supervisor $db
ok $? "and the supervisor keeps running"

# overlap policies, for a job every second whose run lasts 2.5 s
for policy in skip queue_one allow; do
	as_jobber "SELECT pipeline.schedule_job('overlap_$policy', '* * * * * *', 'SELECT pg_sleep(2.5)', '{\"overlap\": \"$policy\"}')" >/dev/null
done
sleep 7
as_jobber "SELECT pipeline.pause_job(name) FROM pipeline.jobs WHERE name LIKE 'overlap_%'" >/dev/null
runs() { echo "pipeline.job_runs r JOIN pipeline.jobs j ON j.id = r.job_id AND j.name = 'overlap_$1'"; }
is "$(q $db "SELECT count(*) FILTER (WHERE state = 'skipped') > 0 AND count(*) FILTER (WHERE state = 'queued') = 0 FROM $(runs skip)")" t \
	"overlap skip: occurrences during a run are recorded skipped, none waits"
is "$(q $db "SELECT count(*) FILTER (WHERE error = 'a run of the job was already waiting') > 0 FROM $(runs queue_one)")" t \
	"overlap queue_one: one occurrence waits, the others are skipped"
is "$(q $db "SELECT count(*) > 0 FROM pipeline.job_runs a JOIN pipeline.job_runs b ON b.job_id = a.job_id AND b.id <> a.id
               AND b.started_at > a.started_at AND b.started_at < coalesce(a.finished_at, now())
               JOIN pipeline.jobs j ON j.id = a.job_id AND j.name = 'overlap_allow'")" t \
	"overlap allow: runs of the job overlap"

# catch-up after downtime: a job that fired 4 and 3 minutes ago while the
# scheduler was away (its last occurrence moved 5 minutes back: a test-only
# time offset); the next fire is an hour away
ref=$(q $db "SELECT now()")
missed=$(q $db "SELECT extract(minute FROM '$ref'::timestamptz - interval '4 minutes')::int || ',' ||
                       extract(minute FROM '$ref'::timestamptz - interval '3 minutes')::int || ' * * * *'")
for policy in none latest all; do
	as_jobber "SELECT pipeline.schedule_job('catch_$policy', '$missed', 'SELECT 1', '{\"catch_up\": \"$policy\", \"enabled\": false}')" >/dev/null
done
q $db "UPDATE pipeline.jobs SET last_scheduled_for = '$ref'::timestamptz - interval '5 minutes' WHERE name LIKE 'catch_%'" >/dev/null
q $db "UPDATE pipeline.jobs SET enabled = true WHERE name LIKE 'catch_%'" >/dev/null
wait_for_sql 20 $db "SELECT count(*) = 4 FROM pipeline.job_runs r JOIN pipeline.jobs j ON j.id = r.job_id AND j.name LIKE 'catch_%' WHERE r.state IN ('succeeded', 'skipped')"
catch() { q $db "SELECT string_agg(r.state, ',' ORDER BY r.scheduled_for) FROM pipeline.job_runs r JOIN pipeline.jobs j ON j.id = r.job_id AND j.name = 'catch_$1'"; }
is "$(catch none)" "skipped" "catch_up none: the missed occurrence is recorded skipped, not run"
is "$(catch latest)" "succeeded" "catch_up latest: only the latest missed occurrence runs"
is "$(catch all)" "succeeded,succeeded" "catch_up all: each missed occurrence runs, in turn"
q $db "DELETE FROM pipeline.jobs WHERE name LIKE 'overlap_%' OR name LIKE 'catch_%'" >/dev/null

# an immediate shutdown in the middle of a run: exactly one retry after the restart
as_jobber "SELECT pipeline.schedule_job('long', NULL, 'SELECT pg_sleep(3); INSERT INTO done SELECT attempt FROM pipeline.run_context()',
  '{\"max_attempts\": 3, \"retry_delay\": \"1 second\"}')" >/dev/null
as_jobber "SELECT pipeline.run_job('long')" >/dev/null
wait_for_sql 10 $db "SELECT state = 'running' FROM pipeline.job_runs r JOIN pipeline.jobs j ON j.id = r.job_id WHERE j.name = 'long'"
restart_cluster immediate >/dev/null 2>&1
ok $? "the cluster restarts after an immediate shutdown during the run"
wait_until 30 q "SELECT 1"
wait_for_sql 30 $db "SELECT count(*) = 1 FROM done"
sleep 2 # a second retry would show up now
is "$(q $db "SELECT string_agg(attempt || ':' || state, ' ' ORDER BY attempt) || ' / done: ' || (SELECT string_agg(attempt::text, ',') FROM done)
               FROM pipeline.job_runs r JOIN pipeline.jobs j ON j.id = r.job_id WHERE j.name = 'long'")" \
	"1:crashed 2:succeeded / done: 2" "the cut run is recorded as crashed and retried exactly once"

# between fire times the supervisor sleeps: no CPU at all
q $db "UPDATE pipeline.jobs SET depends_on = '{}'" >/dev/null
q $db "SELECT pipeline.unschedule_job(name) FROM pipeline.jobs" >/dev/null
as_jobber "SELECT pipeline.schedule_job('yearly', '0 0 1 1 *', 'SELECT 1')" >/dev/null
sleep 1
pid=$(supervisor_pid $db)
before=$(cpu_ticks "$pid")
sleep 3
is "$(($(cpu_ticks "$pid") - before))" 0 "with jobs defined, the supervisor uses no CPU between fire times"

q $db "SELECT pipeline.unschedule_job(name) FROM pipeline.jobs" >/dev/null
q "DROP DATABASE $db WITH (FORCE)" >/dev/null
q "DROP ROLE jobber" >/dev/null
done_testing
