/*-------------------------------------------------------------------------
 *
 * supervisor.c
 *		One background worker per database that has pg_pipeline.
 *
 * The supervisor is where sources and the scheduler will run.  It does no
 * pipeline work itself.  When it starts it checks that the extension
 * exists in its database; if not, it reports that to the launcher through
 * its registry slot and exits.  Afterwards it sleeps on its latch with no
 * timeout, so an idle supervisor uses no CPU; the launcher sets the latch
 * when a backend reports extension DDL, and the supervisor then checks
 * again.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/sinval.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "commands/dbcommands.h"

#include "shmem.h"
#include "supervisor.h"

static char database_name[NAMEDATALEN];

static bool
ExtensionInstalled(void)
{
	bool		installed;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	installed = OidIsValid(get_extension_oid("pg_pipeline", true));
	if (database_name[0] == '\0')
		strlcpy(database_name, get_database_name(MyDatabaseId), NAMEDATALEN);
	CommitTransactionCommand();
	return installed;
}

static void
ExitExtensionAbsent(int slotno)
{
	PipelineSlotSetExit(slotno, PIPELINE_EXIT_EXTENSION_ABSENT);
	proc_exit(0);
}

void
PipelineSupervisorMain(Datum main_arg)
{
	int			slotno = DatumGetInt32(main_arg);
	Oid			dboid;

	memcpy(&dboid, MyBgworkerEntry->bgw_extra, sizeof(Oid));

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	if (!PipelineSlotAttach(slotno, PIPELINE_WORKER_SUPERVISOR, dboid))
		proc_exit(0);

	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("pg_pipeline supervisor");

	if (!ExtensionInstalled())
		ExitExtensionAbsent(slotno);

	PipelineSlotSetState(slotno, "idle");
	pgstat_report_activity(STATE_IDLE, NULL);

	for (;;)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH, -1L,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		/* an idle process must still keep up with invalidation messages */
		if (catchupInterruptPending)
			ProcessCatchupInterrupt();

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		if (!ExtensionInstalled())
		{
			ereport(LOG,
					(errmsg("pg_pipeline supervisor for database \"%s\" stopping: the extension was dropped",
							database_name)));
			ExitExtensionAbsent(slotno);
		}
	}
}
