/*-------------------------------------------------------------------------
 *
 * supervisor.h
 *		The per-database supervisor background worker.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_PIPELINE_SUPERVISOR_H
#define PG_PIPELINE_SUPERVISOR_H

#include "fmgr.h"

extern PGDLLEXPORT void PipelineSupervisorMain(Datum main_arg) pg_attribute_noreturn();

#endif							/* PG_PIPELINE_SUPERVISOR_H */
