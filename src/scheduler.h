/*-------------------------------------------------------------------------
 *
 * scheduler.h
 *		The supervisor's job scheduler, and the worker that runs one job run.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_PIPELINE_SCHEDULER_H
#define PG_PIPELINE_SCHEDULER_H

#include "postgres.h"

/* What the supervisor hands a job worker */
typedef struct JobWorkerArgs
{
	int64		run_id;
	Oid			dboid;
	Oid			owner;
	int			slotno;
} JobWorkerArgs;

extern long PipelineSchedulerTick(bool first);
extern void PipelineSchedulerShutdown(void);
extern void PipelineQueueJobRetry(int64 run_id);

extern PGDLLEXPORT void PipelineJobWorkerMain(Datum main_arg) pg_attribute_noreturn();

#endif
