/*-------------------------------------------------------------------------
 *
 * job_worker.c
 *		A job worker: runs one job run, connected as the job's owner.
 *
 * It claims its run ('starting' -> 'running', committed, so the run shows
 * as running), then runs the command in one transaction that also marks the
 * run 'succeeded' and queues the jobs of its graph that now may run: the
 * work and its record commit together.  A job created with atomic = false
 * (a procedure that commits as it goes) runs in a non-atomic context and its
 * success is recorded after: a crash between the two retries it, so such a
 * command must be safe to run again.  On an error
 * the transaction rolls back and a new one records the failure ('failed',
 * or 'timed_out' when the job's timeout cancelled it), queues the next
 * attempt with exponential backoff if the job has attempts left, and
 * notifies channel pipeline_job_failed.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "parser/analyze.h"
#include "parser/parser.h"
#include "tcop/pquery.h"
#include "tcop/utility.h"
#include "utils/portal.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"

#include "catalog.h"
#include "guc.h"
#include "scheduler.h"
#include "shmem.h"

typedef struct JobRun
{
	char	   *job;
	char	   *command;
	char	   *timeout_ms;		/* NULL: none */
	char	   *scheduled_for;
	int			attempt;
	bool		atomic;			/* the command and its record in one transaction */
} JobRun;

static JobWorkerArgs worker_args;

/* Claim the run; NULL if it is no longer ours to run (dropped, or taken) */
static JobRun *
ClaimRun(void)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		args[1] = {Int64GetDatum(worker_args.run_id)};
	JobRun	   *run = NULL;

	PipelineSpiBegin();
	if (SPI_execute_with_args("UPDATE pipeline.job_runs r SET state = 'running', "
							  "pid = pg_catalog.pg_backend_pid(), started_at = pg_catalog.clock_timestamp() "
							  "FROM pipeline.jobs j WHERE r.id OPERATOR(pg_catalog.=) $1 "
							  "AND r.state OPERATOR(pg_catalog.=) 'starting' AND j.id OPERATOR(pg_catalog.=) r.job_id "
							  "RETURNING j.name, j.command, "
							  "  (pg_catalog.date_part('epoch', j.timeout) OPERATOR(pg_catalog.*) 1000)::bigint, "
							  "  r.scheduled_for, r.attempt, j.atomic",
							  1, argtypes, args, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not claim job run " INT64_FORMAT, worker_args.run_id);
	if (SPI_processed == 1)
	{
		HeapTuple	tuple = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
		bool		isnull;

		run = palloc0(sizeof(JobRun));
		run->job = SPI_getvalue(tuple, desc, 1);
		run->command = SPI_getvalue(tuple, desc, 2);
		run->timeout_ms = SPI_getvalue(tuple, desc, 3);
		/* ISO text, whatever the owner's DateStyle */
		run->scheduled_for = DatumGetCString(DirectFunctionCall1(timestamptz_out, SPI_getbinval(tuple, desc, 4, &isnull)));
		run->attempt = DatumGetInt32(SPI_getbinval(tuple, desc, 5, &isnull));
		run->atomic = DatumGetBool(SPI_getbinval(tuple, desc, 6, &isnull));
		MemoryContextSwitchTo(old);
	}
	PipelineSpiCommit();
	/* the supervisor watches the run's timeout from now on */
	if (run && run->timeout_ms)
		PipelineWakeSupervisor(MyDatabaseId);
	return run;
}

/* For the whole run: the worker runs this one run, then exits */
static void
SetForRun(const char *name, const char *value)
{
	(void) set_config_option(name, value, PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SET, true, 0, false);
}

/* Before a command runs: the superuser rule, and pipeline.run_context() */
static void
ExecuteCommandChecks(JobRun *run)
{
	if (superuser() && !pg_pipeline_allow_superuser_jobs)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("job \"%s\" is owned by a superuser", run->job),
				 errhint("Jobs owned by superusers run only with pg_pipeline.allow_superuser_jobs = on.")));
	/* pipeline.run_context() reads these */
	SetForRun("pipeline.job", run->job);
	SetForRun("pipeline.run_id", psprintf(INT64_FORMAT, worker_args.run_id));
	SetForRun("pipeline.scheduled_for", run->scheduled_for);
	SetForRun("pipeline.attempt", psprintf("%d", run->attempt));
	pgstat_report_activity(STATE_RUNNING, run->command);
}

/* The job's command, within the current transaction */
static void
ExecuteCommand(JobRun *run)
{
	ExecuteCommandChecks(run);

	/* the timeout covers the whole command: it cancels it as a statement timeout */
	if (run->timeout_ms)
		enable_timeout_after(STATEMENT_TIMEOUT, (int) pg_strtoint64(run->timeout_ms));
	if (SPI_execute(run->command, false, 0) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("job \"%s\" could not run its command", run->job)));
	disable_timeout(STATEMENT_TIMEOUT, false);
}

/*
 * A command that is not atomic runs as a client's would: each statement in
 * its own transaction, through a top-level portal, so that a procedure it
 * calls can COMMIT.
 */
static void
ExecuteAtTopLevel(JobRun *run)
{
	/*
	 * Parse trees and plans outlive the transactions a procedure's COMMIT
	 * ends, as in a client backend's message context.
	 */
	MemoryContext statements = AllocSetContextCreate(TopMemoryContext, "pg_pipeline job statements",
													 ALLOCSET_DEFAULT_SIZES);
	List	   *raws;
	ListCell   *lc;

	StartTransactionCommand();
	ExecuteCommandChecks(run);
	MemoryContextSwitchTo(statements);
	raws = raw_parser(run->command, RAW_PARSE_DEFAULT);
	CommitTransactionCommand();

	if (run->timeout_ms)
		enable_timeout_after(STATEMENT_TIMEOUT, (int) pg_strtoint64(run->timeout_ms));
	foreach(lc, raws)
	{
		RawStmt    *raw = lfirst_node(RawStmt, lc);
		bool		snapshot_set = false;
		List	   *queries;
		List	   *plans;
		Portal		portal;
		DestReceiver *receiver;
		QueryCompletion qc;

		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		MemoryContextSwitchTo(statements);
		if (analyze_requires_snapshot(raw))
		{
			PushActiveSnapshot(GetTransactionSnapshot());
			snapshot_set = true;
		}
		queries = pg_analyze_and_rewrite_fixedparams(raw, run->command, NULL, 0, NULL);
		plans = pg_plan_queries(queries, run->command, CURSOR_OPT_PARALLEL_OK, NULL);
		if (snapshot_set)
			PopActiveSnapshot();

		portal = CreatePortal("", true, true);
		portal->visible = false;
		PortalDefineQuery(portal, NULL, run->command, CreateCommandTag(raw->stmt), plans, NULL);
		PortalStart(portal, NULL, 0, InvalidSnapshot);
		receiver = CreateDestReceiver(DestNone);
		(void) PortalRun(portal, FETCH_ALL, true, true, receiver, receiver, &qc);
		receiver->rDestroy(receiver);
		PortalDrop(portal, false);
		CommitTransactionCommand();
	}
	disable_timeout(STATEMENT_TIMEOUT, false);
	MemoryContextSwitchTo(TopMemoryContext);
	MemoryContextDelete(statements);
}

/*
 * The command, and the run marked succeeded, in one transaction; for a job
 * that is not atomic (a procedure that commits), the command in its own
 * non-atomic context first.
 */
static void
RunCommand(JobRun *run)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		args[1] = {Int64GetDatum(worker_args.run_id)};

	if (!run->atomic)
		ExecuteAtTopLevel(run);
	PipelineSpiBegin();
	if (run->atomic)
		ExecuteCommand(run);
	if (SPI_execute_with_args("UPDATE pipeline.job_runs SET state = 'succeeded', "
							  "finished_at = pg_catalog.clock_timestamp() WHERE id OPERATOR(pg_catalog.=) $1 "
							  "AND state OPERATOR(pg_catalog.=) 'running'",
							  1, argtypes, args, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not record job run " INT64_FORMAT, worker_args.run_id);
	/* ended meanwhile (terminated after its timeout): the work must not commit */
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("job run " INT64_FORMAT " was ended before it finished", worker_args.run_id)));
	if (SPI_execute_with_args("SELECT pipeline.job_run_ended($1)", 1, argtypes, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not record job run " INT64_FORMAT, worker_args.run_id);
	PipelineSpiCommit();
}

/* After an error: record it, queue the next attempt if any, notify */
static void
RecordFailure(JobRun *run, ErrorData *edata)
{
	bool		timed_out = edata->sqlerrcode == ERRCODE_QUERY_CANCELED && run->timeout_ms != NULL;
	Oid			argtypes[4] = {INT8OID, TEXTOID, TEXTOID, TEXTOID};
	Datum		args[4] = {
		Int64GetDatum(worker_args.run_id),
		CStringGetTextDatum(timed_out ? "timed_out" : "failed"),
		CStringGetTextDatum(unpack_sql_state(edata->sqlerrcode)),
		CStringGetTextDatum(timed_out ? psprintf("timed out after %s ms: %s", run->timeout_ms, edata->message)
							: edata->message)
	};

	PipelineSpiBegin();
	if (SPI_execute_with_args("UPDATE pipeline.job_runs SET state = $2, sqlstate = $3, error = $4, "
							  "finished_at = pg_catalog.clock_timestamp() WHERE id OPERATOR(pg_catalog.=) $1 "
							  "AND state OPERATOR(pg_catalog.=) 'running'",
							  4, argtypes, args, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not record the failure of job run " INT64_FORMAT, worker_args.run_id);
	/* already ended by the supervisor (terminated after its timeout), which queued the retry */
	if (SPI_processed == 0)
	{
		PipelineSpiCommit();
		return;
	}
	PipelineQueueJobRetry(worker_args.run_id);
	if (SPI_execute_with_args("SELECT pg_catalog.pg_notify('pipeline_job_failed', pg_catalog.json_build_object("
							  "'job', j.name, 'run_id', r.id, 'scheduled_for', r.scheduled_for, 'attempt', r.attempt, "
							  "'state', r.state, 'sqlstate', r.sqlstate, 'error', r.error)::text) "
							  "FROM pipeline.job_runs r JOIN pipeline.jobs j ON j.id OPERATOR(pg_catalog.=) r.job_id "
							  "WHERE r.id OPERATOR(pg_catalog.=) $1",
							  1, argtypes, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not record the failure of job run " INT64_FORMAT, worker_args.run_id);
	PipelineSpiCommit();
	ereport(LOG,
			(errmsg("pg_pipeline job \"%s\" run " INT64_FORMAT " %s: %s", run->job, worker_args.run_id,
					timed_out ? "timed out" : "failed", edata->message)));
}

void
PipelineJobWorkerMain(Datum main_arg)
{
	JobRun	   *run;

	memcpy(&worker_args, MyBgworkerEntry->bgw_extra, sizeof(JobWorkerArgs));
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	if (!PipelineSlotAttach(worker_args.slotno, PIPELINE_WORKER_JOB, worker_args.dboid))
		proc_exit(0);
	/* as the owner: the job has exactly its rights */
	BackgroundWorkerInitializeConnectionByOid(worker_args.dboid, worker_args.owner, 0);
	pgstat_report_appname("pg_pipeline job");
	PipelineSlotSetState(worker_args.slotno, "running");

	run = ClaimRun();
	if (run == NULL)
		proc_exit(0);

	PG_TRY();
	{
		RunCommand(run);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(TopMemoryContext);
		edata = CopyErrorData();
		FlushErrorState();
		AbortOutOfAnyTransaction();
		RecordFailure(run, edata);
	}
	PG_END_TRY();
	proc_exit(0);
}
