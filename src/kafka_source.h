/*-------------------------------------------------------------------------
 *
 * kafka_source.h
 *		Background worker that streams Kafka partitions into a table.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_PIPELINE_KAFKA_SOURCE_H
#define PG_PIPELINE_KAFKA_SOURCE_H

#include "fmgr.h"

/* What the supervisor tells a source worker, in bgw_extra */
typedef struct KafkaWorkerArgs
{
	Oid			dboid;
	Oid			owner;
	int64		source_id;
	int32		worker_index;
	int32		slotno;
} KafkaWorkerArgs;

extern PGDLLEXPORT void PipelineKafkaSourceMain(Datum main_arg) pg_attribute_noreturn();

#endif							/* PG_PIPELINE_KAFKA_SOURCE_H */
