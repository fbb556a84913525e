/*-------------------------------------------------------------------------
 *
 * ddl_watch.h
 *		Utility hook that tells the launcher about DDL affecting it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_PIPELINE_DDL_WATCH_H
#define PG_PIPELINE_DDL_WATCH_H

extern void PipelineDdlWatchInit(void);
extern void PipelineWakeSupervisorAtCommit(void);

#endif							/* PG_PIPELINE_DDL_WATCH_H */
