/*-------------------------------------------------------------------------
 *
 * report.h
 *		Report tables: which partitions changed since their last refresh.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_PIPELINE_REPORT_H
#define PG_PIPELINE_REPORT_H

#include "fmgr.h"

extern Datum pipeline_report_input_trigger(PG_FUNCTION_ARGS);

#endif							/* PG_PIPELINE_REPORT_H */
