/*-------------------------------------------------------------------------
 *
 * ddl_watch.c
 *		Notices the DDL that changes where supervisors must run.
 *
 * The launcher is connected to no database, so it cannot see pg_extension.
 * Instead every backend (the library is preloaded everywhere) watches its
 * own utility statements:
 *
 *	- CREATE/ALTER/DROP EXTENSION pg_pipeline, DROP OWNED, CREATE DATABASE
 *	  and ALTER DATABASE ask the launcher to re-check, once the transaction
 *	  commits;
 *	- DROP DATABASE, CREATE DATABASE ... TEMPLATE, ALTER DATABASE ... RENAME
 *	  and ALTER DATABASE ... SET TABLESPACE need the database to themselves,
 *	  so its supervisor is stopped and kept away while the statement runs.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
#include "utils/acl.h"

#include "ddl_watch.h"
#include "shmem.h"

#define PIPELINE_EXTENSION_NAME "pg_pipeline"

/* Time a database stays suspended while a statement needs it alone */
#define SUSPEND_DURING_STATEMENT_MS (3600 * 1000L)
/* ... and after it, so that its transaction can commit first */
#define SUSPEND_AFTER_STATEMENT_MS 1000L

static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/* What to tell the launcher or supervisor when the transaction commits */
static bool check_database_at_commit = false;
static bool rescan_at_commit = false;
static bool wake_supervisor_at_commit = false;

static bool
NamesOurExtension(List *names)
{
	ListCell   *lc;

	foreach(lc, names)
	{
		if (strcmp(strVal(lfirst(lc)), PIPELINE_EXTENSION_NAME) == 0)
			return true;
	}
	return false;
}

/* The option of that name with a value, or NULL */
static DefElem *
OptionGiven(List *options, const char *name)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *opt = lfirst_node(DefElem, lc);

		if (strcmp(opt->defname, name) == 0 && opt->arg != NULL)
			return opt;
	}
	return NULL;
}

/*
 * Database that the statement needs without other connections, if any.
 * Only statements that can succeed count: otherwise any role could keep a
 * supervisor down by running doomed DDL in a loop.
 */
static pg_noinline Oid
DatabaseNeededAlone(Node *parsetree)
{
	const char *dbname = NULL;
	Oid			dboid;

	/* none of these statements may run inside a transaction block */
	if (IsTransactionBlock())
		return InvalidOid;

	switch (nodeTag(parsetree))
	{
		case T_DropdbStmt:
			dbname = ((DropdbStmt *) parsetree)->dbname;
			break;
		case T_RenameStmt:
			if (((RenameStmt *) parsetree)->renameType == OBJECT_DATABASE)
				dbname = ((RenameStmt *) parsetree)->subname;
			break;
		case T_CreatedbStmt:
			{
				DefElem    *template = OptionGiven(((CreatedbStmt *) parsetree)->options,
												   "template");

				if (template == NULL || !have_createdb_privilege())
					return InvalidOid;
				dbname = defGetString(template);
				break;
			}
		case T_AlterDatabaseStmt:
			/* SET TABLESPACE moves the files: no connections allowed */
			if (OptionGiven(((AlterDatabaseStmt *) parsetree)->options, "tablespace"))
				dbname = ((AlterDatabaseStmt *) parsetree)->dbname;
			break;
		default:
			break;
	}
	if (dbname == NULL)
		return InvalidOid;

	/* each of them needs ownership (templates, which need less, have no supervisor) */
	dboid = get_database_oid(dbname, true);
	if (!OidIsValid(dboid) || !pg_database_ownercheck(dboid, GetUserId()))
		return InvalidOid;
	return dboid;
}

/*
 * DROP EXTENSION pg_pipeline by its owner: the database's supervisor and
 * workers stop while it runs.  It locks the extension's tables one by one,
 * and a supervisor or worker transaction touching two of them in another
 * order would deadlock with it.
 */
static Oid
DatabaseDroppingExtension(Node *parsetree)
{
	DropStmt   *stmt;
	Oid			extension;

	if (!IsA(parsetree, DropStmt))
		return InvalidOid;
	stmt = (DropStmt *) parsetree;
	if (stmt->removeType != OBJECT_EXTENSION || !NamesOurExtension(stmt->objects))
		return InvalidOid;
	extension = get_extension_oid(PIPELINE_EXTENSION_NAME, true);
	if (!OidIsValid(extension) || !pg_extension_ownercheck(extension, GetUserId()))
		return InvalidOid;
	return MyDatabaseId;
}

static void
NoteExtensionDdl(Node *parsetree)
{
	switch (nodeTag(parsetree))
	{
		case T_CreateExtensionStmt:
			{
				CreateExtensionStmt *stmt = (CreateExtensionStmt *) parsetree;

				/* CASCADE may install us as a dependency of another one */
				if (strcmp(stmt->extname, PIPELINE_EXTENSION_NAME) == 0 ||
					(OptionGiven(stmt->options, "cascade") &&
					 defGetBoolean(OptionGiven(stmt->options, "cascade"))))
					check_database_at_commit = true;
				break;
			}
		case T_AlterExtensionStmt:
			if (strcmp(((AlterExtensionStmt *) parsetree)->extname,
					   PIPELINE_EXTENSION_NAME) == 0)
				check_database_at_commit = true;
			break;
		case T_DropStmt:
			{
				DropStmt   *stmt = (DropStmt *) parsetree;

				if (stmt->removeType == OBJECT_EXTENSION &&
					(NamesOurExtension(stmt->objects) || stmt->behavior == DROP_CASCADE))
					check_database_at_commit = true;
				break;
			}
		case T_DropOwnedStmt:
			check_database_at_commit = true;
			break;
		case T_TransactionStmt:
			/* a prepared transaction may hold CREATE or DROP EXTENSION */
			if (((TransactionStmt *) parsetree)->kind == TRANS_STMT_COMMIT_PREPARED)
				check_database_at_commit = true;
			break;
		case T_CreatedbStmt:
			/* a copy of a template that has the extension has it too */
		case T_AlterDatabaseStmt:
			/* ALLOW_CONNECTIONS and IS_TEMPLATE decide who gets a supervisor */
			rescan_at_commit = true;
			break;
		default:
			break;
	}
}

static void
PipelineProcessUtility(PlannedStmt *pstmt, const char *queryString,
					   bool readOnlyTree, ProcessUtilityContext context,
					   ParamListInfo params, QueryEnvironment *queryEnv,
					   DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;
	volatile Oid needed_alone = DatabaseNeededAlone(parsetree);

	if (!OidIsValid(needed_alone))
		needed_alone = DatabaseDroppingExtension(parsetree);

	NoteExtensionDdl(parsetree);

	if (OidIsValid(needed_alone))
		PipelineSuspendDatabase(needed_alone, SUSPEND_DURING_STATEMENT_MS);

	PG_TRY();
	{
		if (prev_ProcessUtility)
			prev_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
									params, queryEnv, dest, qc);
	}
	PG_FINALLY();
	{
		if (OidIsValid(needed_alone))
			PipelineSuspendDatabase(needed_alone, SUSPEND_AFTER_STATEMENT_MS);
	}
	PG_END_TRY();
}

static void
PipelineXactCallback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
			if (check_database_at_commit)
				PipelineRequestDatabaseCheck(MyDatabaseId);
			if (rescan_at_commit)
				PipelineRequestDatabaseCheck(InvalidOid);
			if (wake_supervisor_at_commit)
				PipelineWakeSupervisor(MyDatabaseId);
			check_database_at_commit = rescan_at_commit = false;
			wake_supervisor_at_commit = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:	/* COMMIT PREPARED reports it instead */
			check_database_at_commit = rescan_at_commit = false;
			wake_supervisor_at_commit = false;
			break;
		default:
			break;
	}
}

/* The catalog changed: the supervisor must look at it once we commit */
void
PipelineWakeSupervisorAtCommit(void)
{
	wake_supervisor_at_commit = true;
}

void
PipelineDdlWatchInit(void)
{
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = PipelineProcessUtility;
	RegisterXactCallback(PipelineXactCallback, NULL);
}
