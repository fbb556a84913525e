/*-------------------------------------------------------------------------
 *
 * shmem.c
 *		Shared memory of pg_pipeline: worker registry, launcher mailbox and
 *		database suspensions.
 *
 * One LWLock guards the whole struct; every operation is a handful of
 * assignments, so contention is not a concern.
 *
 * Registry slots are owned by the launcher: it reserves a slot before it
 * registers a supervisor, and frees it after the postmaster reports the
 * worker stopped, reading the exit reason the worker left behind.  A worker
 * whose launcher is gone frees its own slot when it exits.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "shmem.h"

#define PIPELINE_MAX_PENDING 64
#define PIPELINE_MAX_SUSPENSIONS 64

typedef struct PipelineWorkerSlot
{
	bool		in_use;
	PipelineWorkerKind kind;
	Oid			dboid;
	int			pid;			/* 0 until attached and after exit */
	int			parent_pid;		/* launcher or supervisor that reserved it */
	TimestampTz started_at;
	PipelineWorkerExit exit_reason;
	char		state[PIPELINE_STATE_LEN];
	PipelineWorkerStats stats;
} PipelineWorkerSlot;

typedef struct PipelineSuspension
{
	Oid			dboid;
	int			owner_pid;		/* backend running the statement */
	TimestampTz until;
} PipelineSuspension;

typedef struct PipelineShared
{
	LWLock	   *lock;
	int			launcher_pid;
	Latch	   *launcher_latch;

	/* databases to re-check; InvalidOid asks for a re-scan of pg_database */
	int			npending;
	bool		rescan_all;
	bool		recheck_all;	/* the queue overflowed: re-check every one */
	Oid			pending[PIPELINE_MAX_PENDING];

	PipelineSuspension suspensions[PIPELINE_MAX_SUSPENSIONS];

	int			nslots;
	PipelineWorkerSlot slots[FLEXIBLE_ARRAY_MEMBER];
} PipelineShared;

static PipelineShared *pipeline_shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* A worker needs a background worker slot, so this many always suffice */
static int
PipelineSlotCount(void)
{
	return max_worker_processes;
}

static Size
PipelineShmemSize(void)
{
	return add_size(offsetof(PipelineShared, slots),
					mul_size(PipelineSlotCount(), sizeof(PipelineWorkerSlot)));
}

static void
PipelineShmemRequest(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();

	RequestAddinShmemSpace(PipelineShmemSize());
	RequestNamedLWLockTranche("pg_pipeline", 1);
}

static void
PipelineShmemStartup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	pipeline_shared = ShmemInitStruct("pg_pipeline", PipelineShmemSize(), &found);
	if (!found)
	{
		memset(pipeline_shared, 0, PipelineShmemSize());
		pipeline_shared->lock = &(GetNamedLWLockTranche("pg_pipeline"))->lock;
		pipeline_shared->nslots = PipelineSlotCount();
	}
	LWLockRelease(AddinShmemInitLock);
}

void
PipelineShmemInit(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = PipelineShmemRequest;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = PipelineShmemStartup;
}

/*
 * A slot whose worker is not running and whose parent is gone will never be
 * released by anyone (the parent died between reserving and releasing it).
 */
static bool
PipelineSlotOrphaned(PipelineWorkerSlot *slot)
{
	return slot->in_use && slot->pid == 0 && slot->parent_pid != MyProcPid &&
		BackendPidGetProc(slot->parent_pid) == NULL;
}

/*
 * Reserve a free registry slot for a worker about to be started.
 * Returns -1 when every slot is taken.
 */
int
PipelineSlotReserve(PipelineWorkerKind kind, Oid dboid, int64 object_id, int object_index)
{
	int			slotno = -1;

	LWLockAcquire(pipeline_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < pipeline_shared->nslots; i++)
	{
		PipelineWorkerSlot *slot = &pipeline_shared->slots[i];

		if (slot->in_use && !PipelineSlotOrphaned(slot))
			continue;
		memset(slot, 0, sizeof(*slot));
		slot->in_use = true;
		slot->kind = kind;
		slot->dboid = dboid;
		slot->parent_pid = MyProcPid;
		slot->stats.object_id = object_id;
		slot->stats.object_index = object_index;
		strlcpy(slot->state, "starting", PIPELINE_STATE_LEN);
		slotno = i;
		break;
	}
	LWLockRelease(pipeline_shared->lock);
	return slotno;
}

static void
PipelineSlotDetach(int code, Datum arg)
{
	PipelineWorkerSlot *slot = &pipeline_shared->slots[DatumGetInt32(arg)];

	LWLockAcquire(pipeline_shared->lock, LW_EXCLUSIVE);
	slot->pid = 0;
	/* nobody is left to read our exit reason: free the slot ourselves */
	if (slot->kind == PIPELINE_WORKER_LAUNCHER ||
		BackendPidGetProc(slot->parent_pid) == NULL)
		slot->in_use = false;
	LWLockRelease(pipeline_shared->lock);
}

/*
 * Claim a reserved slot as the running worker.  Fails if the slot is not the
 * one reserved for us, or if another worker for the same job (kind,
 * database, object) still runs: a leftover of a previous parent.
 */
bool
PipelineSlotAttach(int slotno, PipelineWorkerKind kind, Oid dboid)
{
	PipelineWorkerSlot *slot;
	bool		ok = true;

	if (slotno < 0 || slotno >= pipeline_shared->nslots)
		return false;
	slot = &pipeline_shared->slots[slotno];

	LWLockAcquire(pipeline_shared->lock, LW_EXCLUSIVE);
	if (!slot->in_use || slot->kind != kind || slot->dboid != dboid || slot->pid != 0)
		ok = false;
	for (int i = 0; ok && i < pipeline_shared->nslots; i++)
	{
		PipelineWorkerSlot *other = &pipeline_shared->slots[i];

		if (i != slotno && other->in_use && other->pid != 0 &&
			other->kind == kind && other->dboid == dboid &&
			other->stats.object_id == slot->stats.object_id &&
			other->stats.object_index == slot->stats.object_index)
			ok = false;
	}
	if (ok)
	{
		slot->pid = MyProcPid;
		slot->started_at = GetCurrentTimestamp();
	}
	else if (slot->in_use && slot->pid == 0)
		slot->exit_reason = PIPELINE_EXIT_DUPLICATE;
	LWLockRelease(pipeline_shared->lock);

	if (ok)
		on_shmem_exit(PipelineSlotDetach, Int32GetDatum(slotno));
	return ok;
}

void
PipelineSlotSetState(int slotno, const char *state)
{
	LWLockAcquire(pipeline_shared->lock, LW_EXCLUSIVE);
	strlcpy(pipeline_shared->slots[slotno].state, state, PIPELINE_STATE_LEN);
	LWLockRelease(pipeline_shared->lock);
}

/* Publish a worker's figures; its object and index stay as reserved */
void
PipelineSlotSetStats(int slotno, const PipelineWorkerStats *stats)
{
	PipelineWorkerSlot *slot = &pipeline_shared->slots[slotno];

	LWLockAcquire(pipeline_shared->lock, LW_EXCLUSIVE);
	slot->stats.messages = stats->messages;
	slot->stats.bytes = stats->bytes;
	slot->stats.messages_per_second = stats->messages_per_second;
	slot->stats.bytes_per_second = stats->bytes_per_second;
	LWLockRelease(pipeline_shared->lock);
}

/* The running worker of that kind in that database, or -1 */
int
PipelineSlotFind(PipelineWorkerKind kind, Oid dboid)
{
	int			slotno = -1;

	if (pipeline_shared == NULL)
		return -1;
	LWLockAcquire(pipeline_shared->lock, LW_SHARED);
	for (int i = 0; i < pipeline_shared->nslots; i++)
	{
		PipelineWorkerSlot *slot = &pipeline_shared->slots[i];

		if (slot->in_use && slot->pid != 0 && slot->kind == kind && slot->dboid == dboid)
			slotno = i;
	}
	LWLockRelease(pipeline_shared->lock);
	return slotno;
}

void
PipelineSlotSetExit(int slotno, PipelineWorkerExit reason)
{
	LWLockAcquire(pipeline_shared->lock, LW_EXCLUSIVE);
	pipeline_shared->slots[slotno].exit_reason = reason;
	LWLockRelease(pipeline_shared->lock);
}

/*
 * Free a slot whose worker has stopped; returns why it stopped and, through
 * started_at, when it had started (0 if it never attached).
 */
PipelineWorkerExit
PipelineSlotRelease(int slotno, TimestampTz *started_at)
{
	PipelineWorkerSlot *slot = &pipeline_shared->slots[slotno];
	PipelineWorkerExit reason;

	LWLockAcquire(pipeline_shared->lock, LW_EXCLUSIVE);
	reason = slot->exit_reason;
	*started_at = slot->started_at;
	slot->in_use = false;
	LWLockRelease(pipeline_shared->lock);
	return reason;
}

int
PipelineSlotPid(int slotno)
{
	int			pid;

	LWLockAcquire(pipeline_shared->lock, LW_SHARED);
	pid = pipeline_shared->slots[slotno].pid;
	LWLockRelease(pipeline_shared->lock);
	return pid;
}

/* Copy the running workers into a palloc'd array; returns their count */
int
PipelineWorkersSnapshot(PipelineWorkerInfo **workers)
{
	int			n = 0;

	/* no shared memory under pg_upgrade (see _PG_init) */
	if (pipeline_shared == NULL)
	{
		*workers = NULL;
		return 0;
	}
	*workers = palloc(sizeof(PipelineWorkerInfo) * pipeline_shared->nslots);
	LWLockAcquire(pipeline_shared->lock, LW_SHARED);
	for (int i = 0; i < pipeline_shared->nslots; i++)
	{
		PipelineWorkerSlot *slot = &pipeline_shared->slots[i];
		PipelineWorkerInfo *info = &(*workers)[n];

		if (!slot->in_use || slot->pid == 0)
			continue;
		info->pid = slot->pid;
		info->dboid = slot->dboid;
		info->kind = slot->kind;
		info->started_at = slot->started_at;
		memcpy(info->state, slot->state, PIPELINE_STATE_LEN);
		info->stats = slot->stats;
		n++;
	}
	LWLockRelease(pipeline_shared->lock);
	return n;
}

static void
PipelineLauncherDetach(int code, Datum arg)
{
	LWLockAcquire(pipeline_shared->lock, LW_EXCLUSIVE);
	if (pipeline_shared->launcher_pid == MyProcPid)
	{
		pipeline_shared->launcher_pid = 0;
		pipeline_shared->launcher_latch = NULL;
	}
	LWLockRelease(pipeline_shared->lock);
}

/* Make the calling process the launcher that requests are delivered to */
void
PipelineLauncherAttach(void)
{
	LWLockAcquire(pipeline_shared->lock, LW_EXCLUSIVE);
	pipeline_shared->launcher_pid = MyProcPid;
	pipeline_shared->launcher_latch = MyLatch;
	pipeline_shared->npending = 0;
	pipeline_shared->rescan_all = true;
	LWLockRelease(pipeline_shared->lock);
	on_shmem_exit(PipelineLauncherDetach, (Datum) 0);
}

static void
PipelineWakeLauncher(void)
{
	Latch	   *latch;

	LWLockAcquire(pipeline_shared->lock, LW_SHARED);
	latch = pipeline_shared->launcher_latch;
	LWLockRelease(pipeline_shared->lock);
	if (latch)
		SetLatch(latch);
}

/*
 * Ask the launcher to look at a database again: start a supervisor if the
 * extension appeared, or have the running one check that it still exists.
 * InvalidOid asks for a re-scan of pg_database.
 */
void
PipelineRequestDatabaseCheck(Oid dboid)
{
	if (pipeline_shared == NULL)
		return;

	LWLockAcquire(pipeline_shared->lock, LW_EXCLUSIVE);
	if (!OidIsValid(dboid))
		pipeline_shared->rescan_all = true;
	else if (pipeline_shared->npending >= PIPELINE_MAX_PENDING)
		pipeline_shared->recheck_all = true;
	else
	{
		bool		queued = false;

		for (int i = 0; i < pipeline_shared->npending; i++)
			queued |= (pipeline_shared->pending[i] == dboid);
		if (!queued)
			pipeline_shared->pending[pipeline_shared->npending++] = dboid;
	}
	LWLockRelease(pipeline_shared->lock);
	PipelineWakeLauncher();
}

/* Set the latch of the supervisor of a database, if it runs */
void
PipelineWakeSupervisor(Oid dboid)
{
	int			slotno = PipelineSlotFind(PIPELINE_WORKER_SUPERVISOR, dboid);
	int			pid = slotno >= 0 ? PipelineSlotPid(slotno) : 0;
	PGPROC	   *proc = pid != 0 ? BackendPidGetProc(pid) : NULL;

	if (proc != NULL)
		SetLatch(&proc->procLatch);
}

/*
 * Launcher side of the mailbox: hands over the queued databases (palloc'd),
 * whether pg_database must be re-scanned and whether every database must be
 * re-checked (the queue overflowed).
 */
void
PipelineTakeRequests(Oid **dboids, int *ndboids, bool *rescan_all, bool *recheck_all)
{
	LWLockAcquire(pipeline_shared->lock, LW_EXCLUSIVE);
	*ndboids = pipeline_shared->npending;
	*dboids = palloc(sizeof(Oid) * Max(1, *ndboids));
	memcpy(*dboids, pipeline_shared->pending, sizeof(Oid) * *ndboids);
	pipeline_shared->npending = 0;
	*rescan_all = pipeline_shared->rescan_all;
	*recheck_all = pipeline_shared->recheck_all;
	pipeline_shared->rescan_all = false;
	pipeline_shared->recheck_all = false;
	LWLockRelease(pipeline_shared->lock);
}

/*
 * DROP DATABASE, CREATE DATABASE ... TEMPLATE and ALTER DATABASE ... RENAME
 * refuse to run while other sessions are connected to the database, and a
 * supervisor is such a session.  Stop it and keep the launcher from starting
 * another one for msecs, or until the calling backend exits.
 */
void
PipelineSuspendDatabase(Oid dboid, long msecs)
{
	TimestampTz now = GetCurrentTimestamp();
	PipelineSuspension *target = NULL;
	int			pids[64];
	int			npids = 0;

	if (pipeline_shared == NULL)
		return;

	LWLockAcquire(pipeline_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < PIPELINE_MAX_SUSPENSIONS; i++)
	{
		PipelineSuspension *s = &pipeline_shared->suspensions[i];

		if (s->dboid == dboid)
		{
			target = s;
			break;
		}
		if (target == NULL && (s->dboid == InvalidOid || s->until < now))
			target = s;
	}
	if (target)
	{
		target->dboid = dboid;
		target->owner_pid = MyProcPid;
		target->until = TimestampTzPlusMilliseconds(now, msecs);
	}
	for (int i = 0; target != NULL && i < pipeline_shared->nslots; i++)
	{
		PipelineWorkerSlot *slot = &pipeline_shared->slots[i];

		if (slot->in_use && slot->pid != 0 && slot->dboid == dboid && npids < lengthof(pids))
			pids[npids++] = slot->pid;
	}
	LWLockRelease(pipeline_shared->lock);

	/* without a record the launcher would restart it at once: leave it */
	if (target == NULL)
		ereport(LOG,
				(errmsg("pg_pipeline could not suspend the supervisor of database %u: too many concurrent database statements",
						dboid)));
	for (int i = 0; i < npids; i++)
		kill(pids[i], SIGTERM);
	PipelineWakeLauncher();
}

/*
 * End of the suspension of a database, or 0 if it is not suspended.  A
 * suspension whose backend has exited (FATAL, terminated) has ended too.
 */
TimestampTz
PipelineDatabaseSuspendedUntil(Oid dboid)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz until = 0;
	int			owner_pid = 0;

	LWLockAcquire(pipeline_shared->lock, LW_SHARED);
	for (int i = 0; i < PIPELINE_MAX_SUSPENSIONS; i++)
	{
		PipelineSuspension *s = &pipeline_shared->suspensions[i];

		if (s->dboid == dboid && s->until > now)
		{
			until = s->until;
			owner_pid = s->owner_pid;
		}
	}
	LWLockRelease(pipeline_shared->lock);

	if (until != 0 && BackendPidGetProc(owner_pid) == NULL)
		return 0;
	return until;
}
