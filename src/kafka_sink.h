/*-------------------------------------------------------------------------
 *
 * kafka_sink.h
 *		Produce the committed rows of a table to a Kafka topic.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_PIPELINE_KAFKA_SINK_H
#define PG_PIPELINE_KAFKA_SINK_H

#include "fmgr.h"

extern PGDLLEXPORT Datum pipeline_run_kafka_sink(PG_FUNCTION_ARGS);

#endif							/* PG_PIPELINE_KAFKA_SINK_H */
