/*-------------------------------------------------------------------------
 *
 * guc.c
 *		Defines every pg_pipeline.* configuration parameter.
 *
 * All parameters live here so that the reserved prefix is marked once,
 * after the last definition: a misspelt pg_pipeline.* setting is then an
 * error instead of a silently ignored placeholder.  Workers reload them
 * through PipelineProcessInterrupts().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "miscadmin.h"
#include "postmaster/interrupt.h"
#include "storage/sinval.h"
#include "utils/guc.h"

#include "guc.h"

bool		pg_pipeline_enabled = true;
bool		pg_pipeline_source_synchronous_commit = false;
int			pg_pipeline_restart_backoff_max = 60000;
bool		pg_pipeline_allow_superuser_jobs = false;
int			pg_pipeline_job_history_retention = 30 * 24 * 3600;
int			pg_pipeline_fraud_checkpoint_interval = 5000;

void
PipelineGucInit(void)
{
	DefineCustomBoolVariable("pg_pipeline.enabled",
							 gettext_noop("Runs pg_pipeline's background workers."),
							 gettext_noop("When off, the launcher stops every supervisor "
										  "and starts none until it is turned on again."),
							 &pg_pipeline_enabled,
							 true,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("pg_pipeline.restart_backoff_max",
							gettext_noop("Longest wait before restarting a supervisor that keeps exiting."),
							gettext_noop("The wait starts at one second and doubles with each "
										 "consecutive failure up to this limit."),
							&pg_pipeline_restart_backoff_max,
							60000,
							1000,
							3600000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("pg_pipeline.source_synchronous_commit",
							 gettext_noop("Makes source workers wait for each batch to reach disk."),
							 gettext_noop("Off by default: a batch's rows and offsets commit together, "
										  "so a crash loses both and the batch is read again."),
							 &pg_pipeline_source_synchronous_commit,
							 false,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomBoolVariable("pg_pipeline.allow_superuser_jobs",
							 gettext_noop("Allows jobs owned by a superuser."),
							 gettext_noop("Off by default: jobs should run as a role with only the "
										  "rights they need.  Checked when a job is created and "
										  "before each run."),
							 &pg_pipeline_allow_superuser_jobs,
							 false,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("pg_pipeline.job_history_retention",
							gettext_noop("How long finished job runs stay in pipeline.job_runs."),
							gettext_noop("Older runs are deleted by the supervisor, a bounded "
										 "batch each minute."),
							&pg_pipeline_job_history_retention,
							30 * 24 * 3600,
							60,
							INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pg_pipeline.fraud_checkpoint_interval",
							gettext_noop("How often a fraud scorer writes each per-card and per-terminal state."),
							gettext_noop("Each batch writes the states changed longest ago, so that each "
										 "is written about this often; another session, or a restart, "
										 "rebuilds the rest from the scores since.  0 writes them every batch."),
							&pg_pipeline_fraud_checkpoint_interval,
							5000,
							0,
							3600000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("pg_pipeline");
}

/*
 * What every pg_pipeline worker does when it wakes: honour interrupts, keep
 * up with invalidation messages even while idle, and reload the configuration
 * after SIGHUP.  Returns whether the configuration was reloaded.
 */
bool
PipelineProcessInterrupts(void)
{
	CHECK_FOR_INTERRUPTS();
	if (catchupInterruptPending)
		ProcessCatchupInterrupt();
	if (!ConfigReloadPending)
		return false;
	ConfigReloadPending = false;
	ProcessConfigFile(PGC_SIGHUP);
	return true;
}
