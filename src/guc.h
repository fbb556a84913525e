/*-------------------------------------------------------------------------
 *
 * guc.h
 *		Configuration parameters of pg_pipeline (pg_pipeline.*).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_PIPELINE_GUC_H
#define PG_PIPELINE_GUC_H

extern bool pg_pipeline_enabled;
extern bool pg_pipeline_source_synchronous_commit;
extern int	pg_pipeline_restart_backoff_max;
extern bool pg_pipeline_allow_superuser_jobs;
extern int	pg_pipeline_job_history_retention;
extern int	pg_pipeline_fraud_checkpoint_interval;

extern void PipelineGucInit(void);
extern bool PipelineProcessInterrupts(void);

#endif							/* PG_PIPELINE_GUC_H */
