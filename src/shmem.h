/*-------------------------------------------------------------------------
 *
 * shmem.h
 *		Shared state of pg_pipeline: the worker registry behind the
 *		pipeline.workers view, and the mailbox through which backends tell
 *		the launcher about extension and database DDL.
 *
 * Shared memory holds only live status; definitions and positions live in
 * catalog tables, so everything here may be rebuilt after a crash restart.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_PIPELINE_SHMEM_H
#define PG_PIPELINE_SHMEM_H

#include "datatype/timestamp.h"

#define PIPELINE_STATE_LEN 32

typedef enum PipelineWorkerKind
{
	PIPELINE_WORKER_LAUNCHER,
	PIPELINE_WORKER_SUPERVISOR,
	PIPELINE_WORKER_KAFKA_SOURCE,
	PIPELINE_WORKER_JOB
} PipelineWorkerKind;

/* Why a worker exited, as far as the launcher needs to know */
typedef enum PipelineWorkerExit
{
	PIPELINE_EXIT_UNKNOWN,		/* crashed, terminated or failed */
	PIPELINE_EXIT_EXTENSION_ABSENT, /* database has no pg_pipeline */
	PIPELINE_EXIT_DUPLICATE		/* another supervisor still runs there */
} PipelineWorkerExit;

/* Live figures a worker publishes after each batch */
typedef struct PipelineWorkerStats
{
	int64		object_id;		/* the source a worker serves, or 0 */
	int			object_index;	/* which of the source's workers */
	uint64		messages;		/* since the worker started */
	uint64		bytes;
	double		messages_per_second;	/* over the last minute */
	double		bytes_per_second;
} PipelineWorkerStats;

/* A copy of one registry slot, taken under the lock */
typedef struct PipelineWorkerInfo
{
	int			pid;
	Oid			dboid;
	PipelineWorkerKind kind;
	TimestampTz started_at;
	char		state[PIPELINE_STATE_LEN];
	PipelineWorkerStats stats;
} PipelineWorkerInfo;

extern void PipelineShmemInit(void);

/* Worker registry */
extern int	PipelineSlotReserve(PipelineWorkerKind kind, Oid dboid,
								int64 object_id, int object_index);
extern void PipelineSlotSetStats(int slotno, const PipelineWorkerStats *stats);
extern int	PipelineSlotFind(PipelineWorkerKind kind, Oid dboid);
extern bool PipelineSlotAttach(int slotno, PipelineWorkerKind kind, Oid dboid);
extern void PipelineSlotSetState(int slotno, const char *state);
extern void PipelineSlotSetExit(int slotno, PipelineWorkerExit reason);
extern PipelineWorkerExit PipelineSlotRelease(int slotno, TimestampTz *started_at);
extern int	PipelineSlotPid(int slotno);
extern int	PipelineWorkersSnapshot(PipelineWorkerInfo **workers);

/* Launcher mailbox */
extern void PipelineLauncherAttach(void);
extern void PipelineRequestDatabaseCheck(Oid dboid);
extern void PipelineWakeSupervisor(Oid dboid);
extern void PipelineTakeRequests(Oid **dboids, int *ndboids, bool *rescan_all,
								 bool *recheck_all);

/* Databases that a DDL statement needs without other connections */
extern void PipelineSuspendDatabase(Oid dboid, long msecs);
extern TimestampTz PipelineDatabaseSuspendedUntil(Oid dboid);

#endif							/* PG_PIPELINE_SHMEM_H */
