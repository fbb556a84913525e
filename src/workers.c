/*-------------------------------------------------------------------------
 *
 * workers.c
 *		pipeline.worker_processes(), the function behind pipeline.workers.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "shmem.h"

PG_FUNCTION_INFO_V1(pipeline_worker_processes);

static const char *
WorkerKindName(PipelineWorkerKind kind)
{
	switch (kind)
	{
		case PIPELINE_WORKER_LAUNCHER:
			return "launcher";
		case PIPELINE_WORKER_SUPERVISOR:
			return "supervisor";
		case PIPELINE_WORKER_KAFKA_SOURCE:
			return "kafka source";
		case PIPELINE_WORKER_JOB:
			return "job";
	}
	elog(ERROR, "unknown pg_pipeline worker kind %d", (int) kind);
	return NULL;				/* keep compiler quiet */
}

/* One row per running pg_pipeline worker in the cluster */
Datum
pipeline_worker_processes(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	PipelineWorkerInfo *workers;
	int			n;

	InitMaterializedSRF(fcinfo, 0);
	n = PipelineWorkersSnapshot(&workers);	/* none under pg_upgrade */

	for (int i = 0; i < n; i++)
	{
		Datum		values[11];
		bool		nulls[11] = {false};
		PipelineWorkerStats *st = &workers[i].stats;

		values[0] = Int32GetDatum(workers[i].pid);
		values[1] = ObjectIdGetDatum(workers[i].dboid);
		nulls[1] = !OidIsValid(workers[i].dboid);
		values[2] = CStringGetTextDatum(WorkerKindName(workers[i].kind));
		values[3] = CStringGetTextDatum(workers[i].state);
		values[4] = TimestampTzGetDatum(workers[i].started_at);
		values[5] = Int64GetDatum(st->object_id);
		nulls[5] = (st->object_id == 0);
		values[6] = Int32GetDatum(st->object_index);
		nulls[6] = (st->object_id == 0);
		values[7] = Int64GetDatum((int64) st->messages);
		values[8] = Int64GetDatum((int64) st->bytes);
		values[9] = Float8GetDatum(st->messages_per_second);
		values[10] = Float8GetDatum(st->bytes_per_second);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_VOID();
}
