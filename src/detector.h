/*-------------------------------------------------------------------------
 *
 * detector.h
 *		Anomaly detection over a windowed table.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_PIPELINE_DETECTOR_H
#define PG_PIPELINE_DETECTOR_H

#include "fmgr.h"

extern PGDLLEXPORT Datum pipeline_detector_trigger(PG_FUNCTION_ARGS);

#endif							/* PG_PIPELINE_DETECTOR_H */
