/*-------------------------------------------------------------------------
 *
 * launcher.h
 *		The launcher: one supervisor per database that has pg_pipeline.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_PIPELINE_LAUNCHER_H
#define PG_PIPELINE_LAUNCHER_H

#include "fmgr.h"

extern void PipelineLauncherRegister(void);
extern long PipelineBackoffMs(int failures);
extern PGDLLEXPORT void PipelineLauncherMain(Datum main_arg) pg_attribute_noreturn();

#endif							/* PG_PIPELINE_LAUNCHER_H */
