/*-------------------------------------------------------------------------
 *
 * aggregate.h
 *		Continuous aggregates: GROUP BY queries kept current by folding each
 *		batch of new rows into stored transition states.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_PIPELINE_AGGREGATE_H
#define PG_PIPELINE_AGGREGATE_H

#include "fmgr.h"
#include "utils/relcache.h"

extern Datum pipeline_aggregate_describe(PG_FUNCTION_ARGS);
extern Datum pipeline_aggregate_trigger(PG_FUNCTION_ARGS);
extern Datum pipeline_aggregate_backfill(PG_FUNCTION_ARGS);
extern Datum pipeline_aggregate_window(PG_FUNCTION_ARGS);
extern Datum pipeline_aggregate_describe_rollup(PG_FUNCTION_ARGS);
extern Datum pipeline_aggregate_rollup_recompute(PG_FUNCTION_ARGS);
extern void PipelineFoldIntoAggregates(Oid target, Relation staging);

#endif
