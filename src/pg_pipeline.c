/*-------------------------------------------------------------------------
 *
 * pg_pipeline.c
 *		Module magic and _PG_init: wires each subsystem into the server.
 *
 * pg_pipeline must be loaded through shared_preload_libraries: it needs
 * shared memory, a utility hook in every backend and a launcher background
 * worker, none of which can be set up by a library loaded later.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"

#include "ddl_watch.h"
#include "guc.h"
#include "launcher.h"
#include "shmem.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_pipeline must be loaded via shared_preload_libraries"),
				 errhint("Add pg_pipeline to shared_preload_libraries in postgresql.conf "
						 "(for example ALTER SYSTEM SET shared_preload_libraries = 'pg_pipeline'), "
						 "then restart the server.")));

	PipelineGucInit();

	/* pg_upgrade's temporary server must not start workers */
	if (IsBinaryUpgrade)
		return;

	PipelineShmemInit();
	PipelineDdlWatchInit();
	PipelineLauncherRegister();
}
