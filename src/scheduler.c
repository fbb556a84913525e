/*-------------------------------------------------------------------------
 *
 * scheduler.c
 *		The supervisor's job scheduler: enqueues each due occurrence of each
 *		job in pipeline.job_runs and starts a job worker per run.
 *
 * The ledger comes first.  An occurrence is inserted as a run row (unique
 * per job, logical time and attempt) and the job's last_scheduled_for moves
 * past it in the same transaction, so an occurrence is enqueued once even
 * across restarts and clock steps.  A run is marked 'starting' and that
 * commits before its worker is registered; the worker marks it 'succeeded'
 * in the transaction that does the job's work.  So a run whose worker is
 * gone while it is 'starting' or 'running' (a crash, an immediate shutdown)
 * did not commit its work: it is marked 'crashed' and retried if the job
 * has attempts left.
 *
 * Occurrences missed while the server was down follow the job's catch-up
 * policy: latest (run the last one), none (record it skipped) or all (run
 * each one within catch_up_window, oldest first).  An occurrence that comes
 * while the job's previous run is still queued or running follows its
 * overlap policy: skip (recorded 'skipped'), queue_one or allow.
 *
 * The supervisor sleeps until the next fire time or retry is due; it is
 * woken when jobs change, a run is requested, or a job worker exits.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "utils/resowner.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "catalog.h"
#include "guc.h"
#include "schedule.h"
#include "scheduler.h"
#include "shmem.h"

/* most occurrences stepped over when catching up a job after downtime */
#define CATCH_UP_STEPS 100000

/* how often old history is pruned, and how much at a time */
#define PRUNE_INTERVAL_MS 60000
#define PRUNE_BATCH 10000

static TimestampTz next_prune = 0;

typedef struct JobRunWorker
{
	int64		run_id;
	int			slotno;
	BackgroundWorkerHandle *handle;
} JobRunWorker;

static List *job_workers = NIL;

static void
Execute(const char *sql, int nargs, Oid *argtypes, Datum *args, int expected)
{
	int			rc = SPI_execute_with_args(sql, nargs, argtypes, args, NULL, false, 0);

	if (rc != expected)
		elog(ERROR, "scheduler query failed (%s): %s", SPI_result_code_string(rc), sql);
}

/*
 * After a run failed: queue its next attempt after the backoff, if the job
 * has attempts left; then let its graph follow.  Used by the supervisor and
 * by job workers, inside SPI.
 */
void
PipelineQueueJobRetry(int64 run_id)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		args[1] = {Int64GetDatum(run_id)};

	Execute("INSERT INTO pipeline.job_runs (job_id, owner, scheduled_for, attempt, due_at, trigger, state) "
			"SELECT r.job_id, r.owner, r.scheduled_for, r.attempt OPERATOR(pg_catalog.+) 1, "
			"pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) LEAST(j.retry_delay OPERATOR(pg_catalog.*) "
			"  pg_catalog.power(2, LEAST(r.attempt OPERATOR(pg_catalog.-) 1, 20)), j.max_retry_delay), 'retry', 'queued' "
			"FROM pipeline.job_runs r JOIN pipeline.jobs j ON j.id OPERATOR(pg_catalog.=) r.job_id "
			"WHERE r.id OPERATOR(pg_catalog.=) $1 AND r.attempt OPERATOR(pg_catalog.<) j.max_attempts "
			"ON CONFLICT DO NOTHING",
			1, argtypes, args, SPI_OK_INSERT);
	Execute("SELECT pipeline.job_run_ended($1)", 1, argtypes, args, SPI_OK_SELECT);
}

/*
 * A run ended without an outcome: mark it crashed and, if the job has
 * attempts left, queue the next attempt after its backoff.
 */
static void
MarkCrashed(int64 run_id, const char *reason)
{
	Oid			argtypes[2] = {INT8OID, TEXTOID};
	Datum		args[2] = {Int64GetDatum(run_id), CStringGetTextDatum(reason)};

	Execute("UPDATE pipeline.job_runs SET state = 'crashed', finished_at = pg_catalog.clock_timestamp(), "
			"error = $2 WHERE id OPERATOR(pg_catalog.=) $1 "
			"AND state OPERATOR(pg_catalog.=) ANY (ARRAY['starting', 'running'])",
			2, argtypes, args, SPI_OK_UPDATE);
	if (SPI_processed == 0)
		return;
	PipelineQueueJobRetry(run_id);
	ereport(LOG, (errmsg("pg_pipeline job run " INT64_FORMAT " crashed: %s", run_id, reason)));
}

/* Workers that exited: release their slots; a run they left open crashed */
static void
ReapWorkers(void)
{
	ListCell   *lc;
	List	   *alive = NIL;
	List	   *stopped = NIL;
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	/* the lists outlive this transaction */
	foreach(lc, job_workers)
	{
		JobRunWorker *worker = lfirst(lc);
		pid_t		pid;

		if (GetBackgroundWorkerPid(worker->handle, &pid) == BGWH_STOPPED)
			stopped = lappend(stopped, worker);
		else
			alive = lappend(alive, worker);
	}
	list_free(job_workers);
	job_workers = alive;
	MemoryContextSwitchTo(old);

	/* off the list before anything can fail, so no freed handle stays on it */
	foreach(lc, stopped)
	{
		JobRunWorker *worker = lfirst(lc);
		TimestampTz ignored;
		int64		run_id = worker->run_id;

		(void) PipelineSlotRelease(worker->slotno, &ignored);
		pfree(worker->handle);
		pfree(worker);
		MarkCrashed(run_id, "the job's worker exited before recording an outcome");
	}
	list_free(stopped);
}

/* a run still going this long after its timeout cancelled it is terminated */
#define TERMINATE_GRACE_SECS 10

/* an occurrence later than this is "missed" for the catch-up policy none */
#define LATE_TOLERANCE_USECS (60 * USECS_PER_SEC)
/* the catch-up policy all runs at most this many missed occurrences */
#define MAX_CATCH_UP_RUNS 1000

/*
 * Insert one occurrence of a job.  The overlap policy decides, for an
 * occurrence due while another run of the job is waiting or running: skip
 * records it 'skipped'; queue_one queues it unless one already waits; allow
 * queues it (and lets it start beside the other).  Occurrences caught up
 * after downtime (catch_up_batch) are all queued, to run in turn.
 */
static void
EnqueueOccurrence(int64 job_id, TimestampTz at, bool catch_up_batch, const char *skip_reason)
{
	Oid			argtypes[4] = {INT8OID, TIMESTAMPTZOID, BOOLOID, TEXTOID};
	Datum		args[4] = {Int64GetDatum(job_id), TimestampTzGetDatum(at), BoolGetDatum(catch_up_batch),
	skip_reason ? CStringGetTextDatum(skip_reason) : (Datum) 0};
	char		nulls[4] = {' ', ' ', ' ', skip_reason ? ' ' : 'n'};

	if (SPI_execute_with_args("INSERT INTO pipeline.job_runs (job_id, owner, scheduled_for, attempt, due_at, trigger, state, "
							  "  finished_at, error) "
							  "SELECT j.id, j.owner, $2, 1, $2, 'schedule', d.state, "
							  "  CASE WHEN d.state OPERATOR(pg_catalog.=) 'skipped' THEN pg_catalog.clock_timestamp() END, "
							  "  CASE WHEN d.state OPERATOR(pg_catalog.=) 'skipped' THEN COALESCE($4, "
							  "    CASE j.overlap WHEN 'queue_one' THEN 'a run of the job was already waiting' "
							  "    ELSE 'the previous run was still queued or running' END) END "
							  "FROM pipeline.jobs j, LATERAL (SELECT CASE "
							  "  WHEN $4 IS NOT NULL THEN 'skipped' "
							  "  WHEN $3 OR j.overlap OPERATOR(pg_catalog.=) 'allow' THEN 'queued' "
							  "  WHEN j.overlap OPERATOR(pg_catalog.=) 'queue_one' AND NOT EXISTS (SELECT FROM pipeline.job_runs r "
							  "    WHERE r.job_id OPERATOR(pg_catalog.=) j.id AND r.state OPERATOR(pg_catalog.=) 'queued') THEN 'queued' "
							  "  WHEN NOT EXISTS (SELECT FROM pipeline.job_runs r WHERE r.job_id OPERATOR(pg_catalog.=) j.id "
							  "    AND r.state OPERATOR(pg_catalog.=) ANY (ARRAY['queued', 'starting', 'running'])) THEN 'queued' "
							  "  ELSE 'skipped' END AS state) d "
							  "WHERE j.id OPERATOR(pg_catalog.=) $1 ON CONFLICT DO NOTHING",
							  4, argtypes, args, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not enqueue an occurrence of job " INT64_FORMAT, job_id);
}

/*
 * Parse a job's schedule; a schedule the catalog should never hold (its
 * checks bypassed) is logged and skipped, never an error of the supervisor.
 */
static bool
ParseScheduleSafely(int64 job_id, const char *spec, Schedule *schedule)
{
	MemoryContext context = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	char	   *volatile error = NULL;
	char	   *hint;
	volatile bool parsed = false;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(context);
	PG_TRY();
	{
		char	   *message = NULL;

		parsed = PipelineParseSchedule(spec, schedule, &message, &hint);
		error = message;
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(context);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		error = edata->message;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(context);
	CurrentResourceOwner = owner;
	if (!parsed)
		ereport(LOG,
				(errmsg("pg_pipeline job " INT64_FORMAT " is not scheduled: %s", job_id, error)));
	return parsed;
}

/*
 * Enqueue the due occurrences of each enabled scheduled job, by its
 * catch-up policy; return the earliest future fire time (0 if none).
 */
static TimestampTz
EnqueueDueOccurrences(TimestampTz now)
{
	TimestampTz wake_at = 0;
	SPITupleTable *jobs;
	uint64		njobs;

	Execute("SELECT id, schedule, time_zone, COALESCE(last_scheduled_for, created_at), catch_up, "
			"  (pg_catalog.date_part('epoch', catch_up_window) OPERATOR(pg_catalog.*) 1000000)::bigint "
			"FROM pipeline.jobs WHERE enabled AND schedule IS NOT NULL",
			0, NULL, NULL, SPI_OK_SELECT);
	jobs = SPI_tuptable;
	njobs = SPI_processed;
	for (uint64 i = 0; i < njobs; i++)
	{
		bool		isnull;
		int64		job_id = DatumGetInt64(SPI_getbinval(jobs->vals[i], jobs->tupdesc, 1, &isnull));
		char	   *spec = SPI_getvalue(jobs->vals[i], jobs->tupdesc, 2);
		pg_tz	   *tz = pg_tzset(SPI_getvalue(jobs->vals[i], jobs->tupdesc, 3));
		TimestampTz last = DatumGetTimestampTz(SPI_getbinval(jobs->vals[i], jobs->tupdesc, 4, &isnull));
		char	   *catch_up = SPI_getvalue(jobs->vals[i], jobs->tupdesc, 5);
		int64		window = DatumGetInt64(SPI_getbinval(jobs->vals[i], jobs->tupdesc, 6, &isnull));
		Schedule	schedule;
		TimestampTz next;
		TimestampTz latest;
		TimestampTz *due = NULL;
		int			ndue = 0;
		Oid			argtypes[2] = {INT8OID, TIMESTAMPTZOID};
		Datum		args[2];

		/* checked when written; a time zone can vanish with a tzdata update */
		if (tz == NULL || !ParseScheduleSafely(job_id, spec, &schedule))
			continue;
		if (!PipelineNextFire(&schedule, last, tz, &next))
			continue;
		if (next > now)
		{
			if (wake_at == 0 || next < wake_at)
				wake_at = next;
			continue;
		}

		/* the due occurrences; those kept for catch-up all: the latest ones in the window */
		if (strcmp(catch_up, "all") == 0)
			due = palloc(sizeof(TimestampTz) * MAX_CATCH_UP_RUNS);
		latest = next;
		for (int step = 0; step < CATCH_UP_STEPS; step++)
		{
			if (due && latest >= now - window)
			{
				if (ndue == MAX_CATCH_UP_RUNS)
				{
					memmove(due, due + 1, sizeof(TimestampTz) * (MAX_CATCH_UP_RUNS - 1));
					ndue--;
				}
				due[ndue++] = latest;
			}
			if (!PipelineNextFire(&schedule, latest, tz, &next) || next > now)
				break;
			latest = next;
		}
		if (PipelineNextFire(&schedule, latest, tz, &next) && (wake_at == 0 || next < wake_at))
			wake_at = next;

		if (due)
		{
			/* all: each missed occurrence in the window, oldest first, then the latest */
			for (int k = 0; k < ndue; k++)
				EnqueueOccurrence(job_id, due[k], ndue > 1, NULL);
			if (ndue == 0)
				EnqueueOccurrence(job_id, latest, false, NULL);
		}
		else if (strcmp(catch_up, "none") == 0 && now - latest > LATE_TOLERANCE_USECS)
			EnqueueOccurrence(job_id, latest, false,
							  "missed while the scheduler was not running (catch_up none)");
		else
			EnqueueOccurrence(job_id, latest, false, NULL);

		args[0] = Int64GetDatum(job_id);
		args[1] = TimestampTzGetDatum(latest);
		Execute("UPDATE pipeline.jobs SET last_scheduled_for = $2 WHERE id OPERATOR(pg_catalog.=) $1",
				2, argtypes, args, SPI_OK_UPDATE);
	}
	return wake_at;
}

static bool
StartRunWorker(int64 run_id, Oid owner)
{
	BackgroundWorker bgw;
	JobWorkerArgs args;
	JobRunWorker *worker;
	BackgroundWorkerHandle *handle;
	int			slotno = PipelineSlotReserve(PIPELINE_WORKER_JOB, MyDatabaseId, run_id, 0);

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(bgw.bgw_library_name, "pg_pipeline", BGW_MAXLEN);
	strlcpy(bgw.bgw_function_name, "PipelineJobWorkerMain", BGW_MAXLEN);
	snprintf(bgw.bgw_name, BGW_MAXLEN, "pg_pipeline job run " INT64_FORMAT, run_id);
	strlcpy(bgw.bgw_type, "pg_pipeline job", BGW_MAXLEN);
	args.run_id = run_id;
	args.dboid = MyDatabaseId;
	args.owner = owner;
	args.slotno = slotno;
	StaticAssertStmt(sizeof(args) <= BGW_EXTRALEN, "worker arguments too large");
	memcpy(bgw.bgw_extra, &args, sizeof(args));
	bgw.bgw_notify_pid = MyProcPid;

	if (slotno >= 0 && RegisterDynamicBackgroundWorker(&bgw, &handle))
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		worker = palloc(sizeof(JobRunWorker));
		worker->run_id = run_id;
		worker->slotno = slotno;
		worker->handle = handle;
		job_workers = lappend(job_workers, worker);
		MemoryContextSwitchTo(old);
		return true;
	}

	/* no worker slot free now: the run waits in the queue */
	if (slotno >= 0)
	{
		TimestampTz ignored;

		(void) PipelineSlotRelease(slotno, &ignored);
	}
	PipelineSpiBegin();
	{
		Oid			argtypes[1] = {INT8OID};
		Datum		args1[1] = {Int64GetDatum(run_id)};

		Execute("UPDATE pipeline.job_runs SET state = 'queued' WHERE id OPERATOR(pg_catalog.=) $1 "
				"AND state OPERATOR(pg_catalog.=) 'starting'",
				1, argtypes, args1, SPI_OK_UPDATE);
	}
	PipelineSpiCommit();
	ereport(LOG,
			(errmsg("pg_pipeline job run " INT64_FORMAT " waits: no background worker slot is free", run_id),
			 errhint("Raise max_worker_processes.")));
	return false;
}

/*
 * A run that did not stop when its timeout cancelled it (a command that does
 * not check for interrupts) is terminated after a grace period.  Returns the
 * next such deadline (0 if none).
 */
static TimestampTz
TerminateOverdueRuns(void)
{
	TimestampTz next_deadline = 0;
	ListCell   *lc;

	Execute("SELECT r.id, r.started_at OPERATOR(pg_catalog.+) j.timeout OPERATOR(pg_catalog.+) "
			"  pg_catalog.make_interval(secs => " CppAsString2(TERMINATE_GRACE_SECS) "), "
			"  (r.started_at OPERATOR(pg_catalog.+) j.timeout OPERATOR(pg_catalog.+) "
			"  pg_catalog.make_interval(secs => " CppAsString2(TERMINATE_GRACE_SECS) ")) "
			"  OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp() "
			"FROM pipeline.job_runs r JOIN pipeline.jobs j ON j.id OPERATOR(pg_catalog.=) r.job_id "
			"WHERE r.state OPERATOR(pg_catalog.=) 'running' AND j.timeout IS NOT NULL",
			0, NULL, NULL, SPI_OK_SELECT);
	{
		SPITupleTable *running = SPI_tuptable;
		uint64		nrunning = SPI_processed;

		for (uint64 i = 0; i < nrunning; i++)
		{
			bool		isnull;
			int64		run_id = DatumGetInt64(SPI_getbinval(running->vals[i], running->tupdesc, 1, &isnull));
			TimestampTz deadline = DatumGetTimestampTz(SPI_getbinval(running->vals[i], running->tupdesc, 2, &isnull));
			bool		overdue = DatumGetBool(SPI_getbinval(running->vals[i], running->tupdesc, 3, &isnull));
			Oid			argtypes[1] = {INT8OID};
			Datum		args[1] = {Int64GetDatum(run_id)};

			if (!overdue)
			{
				if (next_deadline == 0 || deadline < next_deadline)
					next_deadline = deadline;
				continue;
			}
			Execute("UPDATE pipeline.job_runs SET state = 'timed_out', finished_at = pg_catalog.clock_timestamp(), "
					"error = 'terminated: it did not stop when its timeout cancelled it' "
					"WHERE id OPERATOR(pg_catalog.=) $1 AND state OPERATOR(pg_catalog.=) 'running'",
					1, argtypes, args, SPI_OK_UPDATE);
			if (SPI_processed == 0)
				continue;		/* it ended meanwhile */
			PipelineQueueJobRetry(run_id);
			foreach(lc, job_workers)
			{
				JobRunWorker *worker = lfirst(lc);

				if (worker->run_id == run_id)
					TerminateBackgroundWorker(worker->handle);
			}
		}
	}
	return next_deadline;
}

/*
 * One pass: crash detection, enqueueing, starting due runs.  Returns how
 * long the supervisor may sleep, in ms (-1: until woken).
 */
long
PipelineSchedulerTick(bool first)
{
	TimestampTz now;
	TimestampTz wake_at;
	int64	   *start_ids;
	Oid		   *start_owners;
	int			nstart = 0;

	PipelineSpiBegin();
	now = GetCurrentTimestamp();
	ReapWorkers();
	if (first)
	{
		/* runs left open by a crash or shutdown: no worker of ours runs them */
		Execute("SELECT id FROM pipeline.job_runs "
				"WHERE state OPERATOR(pg_catalog.=) ANY (ARRAY['starting', 'running'])",
				0, NULL, NULL, SPI_OK_SELECT);
		{
			SPITupleTable *open = SPI_tuptable;
			uint64		nopen = SPI_processed;

			for (uint64 i = 0; i < nopen; i++)
			{
				bool		isnull;

				MarkCrashed(DatumGetInt64(SPI_getbinval(open->vals[i], open->tupdesc, 1, &isnull)),
							"the server stopped during the run");
			}
		}
	}
	/* a dropped owner disables its jobs; what they had queued cannot run */
	Execute("WITH orphaned AS (UPDATE pipeline.jobs j SET enabled = false "
			"  WHERE j.enabled AND NOT EXISTS (SELECT FROM pg_catalog.pg_roles o "
			"    WHERE o.oid OPERATOR(pg_catalog.=) j.owner::oid) RETURNING j.id) "
			"UPDATE pipeline.job_runs r SET state = 'failed', finished_at = pg_catalog.clock_timestamp(), "
			"  error = 'the owner of the job was dropped: the job is disabled' "
			"FROM orphaned WHERE r.job_id OPERATOR(pg_catalog.=) orphaned.id "
			"AND r.state OPERATOR(pg_catalog.=) 'queued'",
			0, NULL, NULL, SPI_OK_UPDATE);
	if (now >= next_prune)
	{
		Oid			argtypes[1] = {INT4OID};
		Datum		args[1] = {Int32GetDatum(pg_pipeline_job_history_retention)};

		/* finished runs past the retention, a bounded batch at a time */
		Execute("DELETE FROM pipeline.job_runs WHERE id OPERATOR(pg_catalog.=) ANY (ARRAY("
				"  SELECT id FROM pipeline.job_runs WHERE finished_at OPERATOR(pg_catalog.<) "
				"  (pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $1)) "
				"  LIMIT " CppAsString2(PRUNE_BATCH) "))",
				1, argtypes, args, SPI_OK_DELETE);
		next_prune = TimestampTzPlusMilliseconds(now, PRUNE_INTERVAL_MS);
	}
	wake_at = EnqueueDueOccurrences(now);
	{
		TimestampTz deadline = TerminateOverdueRuns();

		if (deadline != 0 && (wake_at == 0 || deadline < wake_at))
			wake_at = deadline;
	}

	/*
	 * Due runs, marked starting before any worker exists: one at a time per
	 * job, in order, unless the job allows overlapping runs.
	 */
	Execute("UPDATE pipeline.job_runs r SET state = 'starting' FROM pipeline.jobs j "
			"WHERE j.id OPERATOR(pg_catalog.=) r.job_id "
			"AND r.state OPERATOR(pg_catalog.=) 'queued' AND r.due_at OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp() "
			"AND (j.overlap OPERATOR(pg_catalog.=) 'allow' OR ("
			"  r.id OPERATOR(pg_catalog.=) (SELECT q.id FROM pipeline.job_runs q "
			"    WHERE q.job_id OPERATOR(pg_catalog.=) r.job_id AND q.state OPERATOR(pg_catalog.=) 'queued' "
			"    ORDER BY q.due_at, q.id LIMIT 1) "
			"  AND NOT EXISTS (SELECT FROM pipeline.job_runs b WHERE b.job_id OPERATOR(pg_catalog.=) r.job_id "
			"    AND b.state OPERATOR(pg_catalog.=) ANY (ARRAY['starting', 'running'])))) "
			"RETURNING r.id, j.owner::oid",
			0, NULL, NULL, SPI_OK_UPDATE_RETURNING);
	start_ids = MemoryContextAlloc(TopMemoryContext, sizeof(int64) * Max(SPI_processed, 1));
	start_owners = MemoryContextAlloc(TopMemoryContext, sizeof(Oid) * Max(SPI_processed, 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		start_ids[nstart] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		start_owners[nstart++] = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
	}

	/* the next queued run that is due later (a retry) */
	Execute("SELECT pg_catalog.min(due_at) FROM pipeline.job_runs WHERE state OPERATOR(pg_catalog.=) 'queued'",
			0, NULL, NULL, SPI_OK_SELECT);
	{
		bool		isnull;
		Datum		due = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull && (wake_at == 0 || DatumGetTimestampTz(due) < wake_at))
			wake_at = DatumGetTimestampTz(due);
	}
	PipelineSpiCommit();

	for (int i = 0; i < nstart; i++)
	{
		/* a run that found no free slot is tried again soon */
		if (!StartRunWorker(start_ids[i], start_owners[i]))
		{
			TimestampTz retry = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 1000);

			if (wake_at == 0 || retry < wake_at)
				wake_at = retry;
		}
	}
	pfree(start_ids);
	pfree(start_owners);

	if (wake_at == 0)
		return -1;
	now = GetCurrentTimestamp();
	if (wake_at <= now)
		return 0;
	/* wake exactly at the fire time: round up to the next millisecond */
	return (long) ((wake_at - now + 999) / 1000);
}

/* Stop the job workers when the supervisor exits, so none is orphaned */
void
PipelineSchedulerShutdown(void)
{
	ListCell   *lc;

	foreach(lc, job_workers)
		TerminateBackgroundWorker(((JobRunWorker *) lfirst(lc))->handle);
}
