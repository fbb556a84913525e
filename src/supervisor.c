/*-------------------------------------------------------------------------
 *
 * supervisor.c
 *		One background worker per database that has pg_pipeline.
 *
 * The supervisor does no pipeline work itself: it keeps one worker running
 * for each share of each enabled source (source, worker index), restarts
 * workers that exit with a delay that doubles with each consecutive failure,
 * and stops the workers of sources that were dropped, paused or changed.
 * It also schedules jobs (scheduler.c): it starts a job worker for each due
 * run.
 *
 * When it starts it checks that the extension exists in its database; if
 * not, it reports that to the launcher through its registry slot and exits.
 * Afterwards it sleeps on its latch, with a timeout only while a restart,
 * a job's fire time or a retry is pending, so an idle supervisor uses no CPU.  The latch is set by the
 * postmaster when one of its workers starts or stops, by a trigger on the
 * catalog tables when a transaction that changed them commits, and by the
 * launcher after extension DDL.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/sinval.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "guc.h"
#include "commands/dbcommands.h"

#include "catalog.h"
#include "executor/spi.h"
#include "kafka_source.h"
#include "launcher.h"
#include "scheduler.h"
#include "shmem.h"
#include "supervisor.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

typedef struct SourceWorkerKey
{
	int64		source_id;
	int32		worker_index;
} SourceWorkerKey;

typedef struct SourceWorker
{
	SourceWorkerKey key;		/* hash key */
	Oid			owner;
	int64		generation;		/* definition the running worker started with */
	int64		wanted_generation;	/* 0 if the source is gone or paused */
	BackgroundWorkerHandle *handle;
	int			slotno;
	bool		terminating;
	int			failures;
	TimestampTz started_at;
	TimestampTz next_start;
} SourceWorker;

static char database_name[NAMEDATALEN];
static HTAB *source_workers = NULL;

static bool
ExtensionInstalled(void)
{
	bool		installed;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	installed = OidIsValid(get_extension_oid("pg_pipeline", true));
	if (database_name[0] == '\0')
		strlcpy(database_name, get_database_name(MyDatabaseId), NAMEDATALEN);
	CommitTransactionCommand();
	return installed;
}

/* Mark which source workers the catalog wants now */
static void
LoadWantedWorkers(void)
{
	HASH_SEQ_STATUS status;
	SourceWorker *worker;
	List	   *sources;
	ListCell   *lc;

	hash_seq_init(&status, source_workers);
	while ((worker = hash_seq_search(&status)) != NULL)
		worker->wanted_generation = 0;

	PipelineSpiBegin();
	sources = PipelineLoadEnabledKafkaSources();
	foreach(lc, sources)
	{
		KafkaSourceWorkers *src = lfirst(lc);

		for (int i = 0; i < src->parallelism; i++)
		{
			SourceWorkerKey key;
			bool		found;

			/* the key is hashed and compared as bytes: zero its padding */
			memset(&key, 0, sizeof(key));
			key.source_id = src->id;
			key.worker_index = i;
			worker = hash_search(source_workers, &key, HASH_ENTER, &found);
			if (!found)
			{
				memset(((char *) worker) + sizeof(key), 0, sizeof(SourceWorker) - sizeof(key));
				worker->slotno = -1;
			}
			worker->owner = src->owner;
			worker->wanted_generation = src->generation;
		}
	}
	PipelineSpiCommit();
}

static void
StartSourceWorker(SourceWorker *worker, TimestampTz now)
{
	BackgroundWorker bgw;
	KafkaWorkerArgs args;
	int			slotno = PipelineSlotReserve(PIPELINE_WORKER_KAFKA_SOURCE, MyDatabaseId,
											 worker->key.source_id, worker->key.worker_index);

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(bgw.bgw_library_name, "pg_pipeline", BGW_MAXLEN);
	strlcpy(bgw.bgw_function_name, "PipelineKafkaSourceMain", BGW_MAXLEN);
	snprintf(bgw.bgw_name, BGW_MAXLEN, "pg_pipeline kafka source " INT64_FORMAT "/%d in \"%s\"",
			 worker->key.source_id, worker->key.worker_index, database_name);
	strlcpy(bgw.bgw_type, "pg_pipeline kafka source", BGW_MAXLEN);
	args.dboid = MyDatabaseId;
	args.owner = worker->owner;
	args.source_id = worker->key.source_id;
	args.worker_index = worker->key.worker_index;
	args.slotno = slotno;
	StaticAssertStmt(sizeof(args) <= BGW_EXTRALEN, "worker arguments too large");
	memcpy(bgw.bgw_extra, &args, sizeof(args));
	bgw.bgw_notify_pid = MyProcPid;

	if (slotno >= 0 && RegisterDynamicBackgroundWorker(&bgw, &worker->handle))
	{
		worker->slotno = slotno;
		worker->generation = worker->wanted_generation;
		worker->terminating = false;
		worker->started_at = now;
		return;
	}
	if (slotno >= 0)
	{
		TimestampTz ignored;

		(void) PipelineSlotRelease(slotno, &ignored);
	}
	worker->handle = NULL;
	worker->failures++;
	worker->next_start = TimestampTzPlusMilliseconds(now, PipelineBackoffMs(worker->failures));
	ereport(WARNING,
			(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
			 errmsg("could not start worker %d of kafka source " INT64_FORMAT " in database \"%s\": no free background worker slot",
					worker->key.worker_index, worker->key.source_id, database_name),
			 errdetail("Retrying in %ld ms.", PipelineBackoffMs(worker->failures)),
			 errhint("Raise max_worker_processes (currently %d): each source worker takes one.",
					 max_worker_processes)));
}

/*
 * Start, stop and restart source workers to match the catalog.  Returns how
 * long the supervisor may sleep (-1: until woken).
 */
static long
ReconcileWorkers(void)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz wake_at = 0;
	HASH_SEQ_STATUS status;
	SourceWorker *worker;

	hash_seq_init(&status, source_workers);
	while ((worker = hash_seq_search(&status)) != NULL)
	{
		bool		current = worker->wanted_generation != 0 &&
			worker->wanted_generation == worker->generation;

		if (worker->handle)
		{
			pid_t		pid;

			if (GetBackgroundWorkerPid(worker->handle, &pid) == BGWH_STOPPED)
			{
				TimestampTz ignored;

				(void) PipelineSlotRelease(worker->slotno, &ignored);
				pfree(worker->handle);
				worker->handle = NULL;
				worker->slotno = -1;
				if (worker->terminating || !current)
					worker->next_start = 0;
				else
				{
					if (TimestampDifferenceExceeds(worker->started_at, now,
												   pg_pipeline_restart_backoff_max))
						worker->failures = 0;
					worker->failures++;
					worker->next_start = TimestampTzPlusMilliseconds(now, PipelineBackoffMs(worker->failures));
					ereport(LOG,
							(errmsg("worker %d of kafka source " INT64_FORMAT " in database \"%s\" exited; restarting in %ld ms",
									worker->key.worker_index, worker->key.source_id, database_name,
									PipelineBackoffMs(worker->failures))));
				}
			}
			else if (!current && !worker->terminating)
			{
				/* dropped, paused or changed: stop it, after its batch */
				TerminateBackgroundWorker(worker->handle);
				worker->terminating = true;
			}
		}

		if (worker->handle == NULL && worker->wanted_generation == 0)
		{
			hash_search(source_workers, &worker->key, HASH_REMOVE, NULL);
			continue;
		}
		if (worker->handle == NULL)
		{
			if (worker->next_start <= now)
				StartSourceWorker(worker, now);
			if (worker->handle == NULL && (wake_at == 0 || worker->next_start < wake_at))
				wake_at = worker->next_start;
		}
	}
	if (wake_at == 0)
		return -1;
	return Max(1, (long) ((wake_at - now) / 1000));
}

/* Stop our workers when we exit, so none is orphaned */
static void
SupervisorShutdown(int code, Datum arg)
{
	HASH_SEQ_STATUS status;
	SourceWorker *worker;

	PipelineSchedulerShutdown();
	if (source_workers == NULL)
		return;
	hash_seq_init(&status, source_workers);
	while ((worker = hash_seq_search(&status)) != NULL)
	{
		if (worker->handle)
			TerminateBackgroundWorker(worker->handle);
	}
}

static void
ExitExtensionAbsent(int slotno)
{
	PipelineSlotSetExit(slotno, PIPELINE_EXIT_EXTENSION_ABSENT);
	proc_exit(0);
}

void
PipelineSupervisorMain(Datum main_arg)
{
	int			slotno = DatumGetInt32(main_arg);
	Oid			dboid;
	volatile bool first_tick;

	memcpy(&dboid, MyBgworkerEntry->bgw_extra, sizeof(Oid));

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	if (!PipelineSlotAttach(slotno, PIPELINE_WORKER_SUPERVISOR, dboid))
		proc_exit(0);

	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("pg_pipeline supervisor");

	if (!ExtensionInstalled())
		ExitExtensionAbsent(slotno);
	/* it runs SQL as a superuser: only pg_catalog may resolve its names */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION);

	PipelineSlotSetState(slotno, "idle");
	pgstat_report_activity(STATE_IDLE, NULL);

	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(SourceWorkerKey);
		ctl.entrysize = sizeof(SourceWorker);
		source_workers = hash_create("pg_pipeline source workers", 16, &ctl,
									 HASH_ELEM | HASH_BLOBS);
	}
	before_shmem_exit(SupervisorShutdown, (Datum) 0);
	LoadWantedWorkers();
	first_tick = true;

	for (;;)
	{
		volatile long timeout = ReconcileWorkers();
		volatile long job_timeout;

		/* a job the scheduler trips over must not take the sources down with it */
		PG_TRY();
		{
			job_timeout = PipelineSchedulerTick(first_tick);
			first_tick = false;
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(TopMemoryContext);
			EmitErrorReport();
			FlushErrorState();
			AbortOutOfAnyTransaction();
			job_timeout = 5000;
		}
		PG_END_TRY();
		if (job_timeout >= 0 && (timeout < 0 || job_timeout < timeout))
			timeout = job_timeout;

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH |
						 (timeout >= 0 ? WL_TIMEOUT : 0),
						 timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		(void) PipelineProcessInterrupts();

		if (!ExtensionInstalled())
		{
			ereport(LOG,
					(errmsg("pg_pipeline supervisor for database \"%s\" stopping: the extension was dropped",
							database_name)));
			ExitExtensionAbsent(slotno);
		}
		LoadWantedWorkers();
	}
}
