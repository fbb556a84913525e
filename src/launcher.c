/*-------------------------------------------------------------------------
 *
 * launcher.c
 *		Keeps exactly one supervisor running in each database where the
 *		extension is installed.
 *
 * The launcher is a static background worker connected to no database, so
 * that it never blocks DROP DATABASE.  It reads pg_database (a shared
 * catalog) and starts a supervisor in each connectable, non-template
 * database.  A supervisor that finds no pg_pipeline in its database says so
 * in its registry slot and exits; the launcher then leaves that database
 * alone until a backend reports extension DDL there (ddl_watch.c).  So a
 * database without the extension sees a supervisor only for the instant of
 * such a check.
 *
 * A supervisor that exits for any other reason is restarted after a delay
 * that doubles with each consecutive failure, up to
 * pg_pipeline.restart_backoff_max.  The same backoff applies when no
 * background worker slot is free, so a small max_worker_processes costs one
 * log line per attempt, never a restart loop.
 *
 * The launcher sleeps on its latch with no timeout unless a restart is
 * pending: it is woken by the postmaster when a supervisor starts or stops
 * (bgw_notify_pid), and by backends through the mailbox in shmem.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/sinval.h"
#include "storage/procarray.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "guc.h"
#include "launcher.h"
#include "shmem.h"

#define LAUNCHER_RESTART_SECONDS 5
#define BACKOFF_MIN_MS 1000

typedef struct DatabaseEntry
{
	Oid			dboid;			/* hash key */
	char		name[NAMEDATALEN];
	BackgroundWorkerHandle *handle; /* running supervisor, or NULL */
	int			slotno;
	bool		terminating;	/* asked to stop, not restarted meanwhile */
	bool		absent;			/* no pg_pipeline here; wait for DDL */
	bool		recheck;		/* DDL reported while the supervisor ran */
	bool		dropped;		/* gone from pg_database */
	bool		seen;			/* found by the current scan */
	bool		was_suspended;
	int			failures;		/* consecutive unplanned exits */
	TimestampTz next_start;
} DatabaseEntry;

static HTAB *databases = NULL;

void
PipelineLauncherRegister(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = LAUNCHER_RESTART_SECONDS;
	strlcpy(worker.bgw_library_name, "pg_pipeline", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "PipelineLauncherMain", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "pg_pipeline launcher", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "pg_pipeline launcher", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

/* Wait before the next start after that many consecutive failures */
long
PipelineBackoffMs(int failures)
{
	long		ms = BACKOFF_MIN_MS;

	for (int i = 1; i < failures && ms < pg_pipeline_restart_backoff_max; i++)
		ms *= 2;
	return Min(ms, (long) pg_pipeline_restart_backoff_max);
}

/* Bring the hash table in line with pg_database */
static void
ScanDatabases(void)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	HASH_SEQ_STATUS status;
	DatabaseEntry *entry;

	hash_seq_init(&status, databases);
	while ((entry = hash_seq_search(&status)) != NULL)
		entry->seen = false;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) GetTransactionSnapshot();

	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);
		bool		found;

		/* templates too: a connection to them would block CREATE DATABASE */
		if (!db->datallowconn || db->datistemplate || database_is_invalid_form(db))
			continue;

		entry = hash_search(databases, &db->oid, HASH_ENTER, &found);
		if (!found)
		{
			memset(((char *) entry) + sizeof(Oid), 0, sizeof(DatabaseEntry) - sizeof(Oid));
			entry->slotno = -1;
		}
		strlcpy(entry->name, NameStr(db->datname), NAMEDATALEN);
		entry->seen = true;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);

	CommitTransactionCommand();

	hash_seq_init(&status, databases);
	while ((entry = hash_seq_search(&status)) != NULL)
		entry->dropped = !entry->seen;
}

/* Note that a database may have gained or lost the extension */
static void
RecheckDatabase(DatabaseEntry *entry)
{
	if (entry->handle)
	{
		/* it may have checked before the DDL committed: see SupervisorStopped */
		entry->recheck = true;
		PipelineWakeSupervisor(entry->dboid);
	}
	else if (entry->absent)
	{
		entry->absent = false;
		entry->failures = 0;
		entry->next_start = 0;
	}
}

static void
HandleRequests(void)
{
	Oid		   *dboids;
	int			ndboids;
	bool		rescan;
	bool		recheck_all;

	PipelineTakeRequests(&dboids, &ndboids, &rescan, &recheck_all);
	for (int i = 0; !rescan && i < ndboids; i++)
		rescan = hash_search(databases, &dboids[i], HASH_FIND, NULL) == NULL;
	if (rescan || recheck_all)
		ScanDatabases();

	if (recheck_all)
	{
		HASH_SEQ_STATUS status;
		DatabaseEntry *entry;

		hash_seq_init(&status, databases);
		while ((entry = hash_seq_search(&status)) != NULL)
			RecheckDatabase(entry);
	}
	for (int i = 0; i < ndboids; i++)
	{
		DatabaseEntry *entry = hash_search(databases, &dboids[i], HASH_FIND, NULL);

		if (entry != NULL)
			RecheckDatabase(entry);
	}
	pfree(dboids);
}

static void
StartSupervisor(DatabaseEntry *entry, TimestampTz now)
{
	BackgroundWorker worker;
	int			slotno = PipelineSlotReserve(PIPELINE_WORKER_SUPERVISOR, entry->dboid, 0, 0);

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(worker.bgw_library_name, "pg_pipeline", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "PipelineSupervisorMain", BGW_MAXLEN);
	snprintf(worker.bgw_name, BGW_MAXLEN, "pg_pipeline supervisor for database \"%s\"",
			 entry->name);
	strlcpy(worker.bgw_type, "pg_pipeline supervisor", BGW_MAXLEN);
	worker.bgw_main_arg = Int32GetDatum(slotno);
	memcpy(worker.bgw_extra, &entry->dboid, sizeof(Oid));
	worker.bgw_notify_pid = MyProcPid;

	if (slotno >= 0 && RegisterDynamicBackgroundWorker(&worker, &entry->handle))
	{
		entry->slotno = slotno;
		entry->terminating = false;
		entry->recheck = false;
		return;
	}

	if (slotno >= 0)
	{
		TimestampTz ignored;

		(void) PipelineSlotRelease(slotno, &ignored);
	}
	entry->handle = NULL;
	entry->failures++;
	entry->next_start = TimestampTzPlusMilliseconds(now, PipelineBackoffMs(entry->failures));
	ereport(WARNING,
			(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
			 errmsg("could not start pg_pipeline supervisor for database \"%s\": no free background worker slot",
					entry->name),
			 errdetail("Retrying in %ld ms.", PipelineBackoffMs(entry->failures)),
			 errhint("Raise max_worker_processes (currently %d): pg_pipeline needs one slot for its launcher and one per database that has the extension, besides those of other extensions and parallel queries.",
					 max_worker_processes)));
}

/* Note a stopped supervisor and decide when it may start again */
static void
SupervisorStopped(DatabaseEntry *entry, TimestampTz now, bool planned)
{
	TimestampTz started_at;
	PipelineWorkerExit reason = PipelineSlotRelease(entry->slotno, &started_at);

	pfree(entry->handle);
	entry->handle = NULL;
	entry->slotno = -1;

	if (reason == PIPELINE_EXIT_EXTENSION_ABSENT && entry->recheck)
	{
		/* a check that raced with CREATE EXTENSION: look once more */
		entry->recheck = false;
		entry->next_start = 0;
		return;
	}
	if (reason == PIPELINE_EXIT_EXTENSION_ABSENT)
	{
		entry->absent = true;
		entry->failures = 0;
		return;
	}
	if (planned)
	{
		entry->next_start = 0;
		return;
	}

	/* a supervisor that ran well for a while starts a fresh series */
	if (started_at != 0 &&
		TimestampDifferenceExceeds(started_at, now, pg_pipeline_restart_backoff_max))
		entry->failures = 0;
	entry->failures++;
	entry->next_start = TimestampTzPlusMilliseconds(now, PipelineBackoffMs(entry->failures));
	ereport(LOG,
			(errmsg("pg_pipeline supervisor for database \"%s\" exited; restarting in %ld ms",
					entry->name, PipelineBackoffMs(entry->failures))));
}

/*
 * Start, stop or restart supervisors so that they match the databases.
 * Returns how long the launcher may sleep (-1: until woken).
 */
static long
Reconcile(void)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz wake_at = 0;
	HASH_SEQ_STATUS status;
	DatabaseEntry *entry;
	bool		rescan = false;

	hash_seq_init(&status, databases);
	while ((entry = hash_seq_search(&status)) != NULL)
	{
		TimestampTz suspended_until = PipelineDatabaseSuspendedUntil(entry->dboid);
		bool		wanted = pg_pipeline_enabled && !entry->dropped && suspended_until == 0;

		/* a suspension ended: the database may have been dropped or renamed */
		if (entry->was_suspended && suspended_until == 0)
		{
			entry->was_suspended = false;
			rescan = true;
			continue;
		}
		entry->was_suspended = (suspended_until != 0);

		if (entry->handle)
		{
			pid_t		pid;

			if (GetBackgroundWorkerPid(entry->handle, &pid) == BGWH_STOPPED)
				SupervisorStopped(entry, now, entry->terminating || !wanted);
			else if (!wanted && !entry->terminating)
			{
				TerminateBackgroundWorker(entry->handle);
				entry->terminating = true;
			}
		}

		if (entry->handle == NULL && entry->dropped)
		{
			hash_search(databases, &entry->dboid, HASH_REMOVE, NULL);
			continue;
		}

		if (entry->handle == NULL && wanted && !entry->absent)
		{
			if (entry->next_start <= now)
				StartSupervisor(entry, now);
			if (entry->handle == NULL &&
				(wake_at == 0 || entry->next_start < wake_at))
				wake_at = entry->next_start;
		}
		if (suspended_until != 0 && (wake_at == 0 || suspended_until < wake_at))
			wake_at = suspended_until;
	}

	if (rescan)
	{
		ScanDatabases();
		return 0;
	}
	if (wake_at == 0)
		return -1;
	return Max(1, (long) ((wake_at - now) / 1000));
}

/* Stop our supervisors when the launcher exits, so none is orphaned */
static void
LauncherShutdown(int code, Datum arg)
{
	HASH_SEQ_STATUS status;
	DatabaseEntry *entry;

	if (databases == NULL)
		return;
	hash_seq_init(&status, databases);
	while ((entry = hash_seq_search(&status)) != NULL)
	{
		if (entry->handle)
			TerminateBackgroundWorker(entry->handle);
	}
}

void
PipelineLauncherMain(Datum main_arg)
{
	HASHCTL		ctl;
	int			slotno;
	bool		was_enabled;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("pg_pipeline launcher");

	PipelineLauncherAttach();
	slotno = PipelineSlotReserve(PIPELINE_WORKER_LAUNCHER, InvalidOid, 0, 0);
	if (slotno >= 0 && PipelineSlotAttach(slotno, PIPELINE_WORKER_LAUNCHER, InvalidOid))
		PipelineSlotSetState(slotno, "running");

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(DatabaseEntry);
	databases = hash_create("pg_pipeline databases", 16, &ctl, HASH_ELEM | HASH_BLOBS);
	before_shmem_exit(LauncherShutdown, (Datum) 0);

	ereport(LOG, (errmsg("pg_pipeline launcher started")));
	was_enabled = pg_pipeline_enabled;

	for (;;)
	{
		long		timeout;

		if (PipelineProcessInterrupts())
		{
			if (pg_pipeline_enabled && !was_enabled)
				PipelineRequestDatabaseCheck(InvalidOid);
			was_enabled = pg_pipeline_enabled;
		}

		HandleRequests();
		timeout = Reconcile();

		if (timeout != 0)
			(void) WaitLatch(MyLatch,
							 WL_LATCH_SET | WL_EXIT_ON_PM_DEATH |
							 (timeout > 0 ? WL_TIMEOUT : 0),
							 timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
