/*-------------------------------------------------------------------------
 *
 * web_simulator.h
 *		A generator of web traffic with injected incidents.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_PIPELINE_WEB_SIMULATOR_H
#define PG_PIPELINE_WEB_SIMULATOR_H

#include "fmgr.h"

extern PGDLLEXPORT Datum pipeline_simulate_web_traffic(PG_FUNCTION_ARGS);

#endif							/* PG_PIPELINE_WEB_SIMULATOR_H */
