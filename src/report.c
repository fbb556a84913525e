/*-------------------------------------------------------------------------
 *
 * report.c
 *		Report tables: which partitions changed since their last refresh.
 *
 * A report with a partition column (for example its day) names, for each
 * table it reads, an expression giving the partition of a row of that table.
 * A statement trigger on each input writes the distinct partitions of the
 * rows a statement inserted, updated or deleted into pipeline.report_dirty,
 * in the writer's transaction, so a refresh recomputes exactly those.  The
 * expression is the report owner's SQL: it runs as the owner, restricted as
 * in a security-restricted operation, never with the writer's rights.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "catalog.h"
#include "report.h"

PG_FUNCTION_INFO_V1(pipeline_report_input_trigger);

/* Mark the partitions of the rows in one transition table dirty */
static void
MarkPartitions(int64 report_id, Oid owner, const char *expression, const char *rows)
{
	Oid			argtypes[2] = {INT8OID, OIDOID};
	Datum		args[2] = {Int64GetDatum(report_id), ObjectIdGetDatum(owner)};
	char	   *sql = psprintf("INSERT INTO pipeline.report_dirty (report_id, owner, part) "
							   "SELECT DISTINCT $1, $2::pg_catalog.regrole, (%s)::text FROM %s src",
							   expression, rows);

	if (SPI_execute_with_args(sql, 2, argtypes, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not mark the changed partitions of report " INT64_FORMAT, report_id);
}

/*
 * Trigger: AFTER INSERT, UPDATE or DELETE (with transition tables
 * pipeline_new / pipeline_old) or TRUNCATE FOR EACH STATEMENT on an input of
 * a report, with the arguments (report id, owner oid).
 */
Datum
pipeline_report_input_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	int64		report_id;
	Oid			owner;
	Oid			save_userid;
	int			save_sec_context;
	int			nestlevel;
	Oid			argtypes[3] = {INT8OID, OIDOID, OIDOID};
	Datum		args[3];
	char	   *expression;
	char	   *search_path;
	char	   *time_zone;
	char		expected_name[NAMEDATALEN];
	static const char *const events[] = {"insert", "update", "delete", "truncate"};
	int			event;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event) || trigdata->tg_trigger->tgnargs != 2)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("pipeline.report_input_trigger() must be fired by pg_pipeline's statement triggers"),
				 errhint("Do not use it directly: pipeline.create_report creates its triggers.")));
	report_id = pg_strtoint64(trigdata->tg_trigger->tgargs[0]);
	/* the second argument, the owner's OID at creation, is not trusted: dumps restore it as is */
	owner = PipelineCatalogOwner("reports", report_id);
	event = TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) ? 0 :
		TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ? 1 :
		TRIGGER_FIRED_BY_DELETE(trigdata->tg_event) ? 2 : 3;
	snprintf(expected_name, sizeof(expected_name), "pipeline_report_" INT64_FORMAT "_%s",
			 report_id, events[event]);
	if (strcmp(trigdata->tg_trigger->tgname, expected_name) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("trigger \"%s\" is not pg_pipeline's", trigdata->tg_trigger->tgname),
				 errhint("Do not use pipeline.report_input_trigger() directly: pipeline.create_report creates its triggers.")));

	if (!OidIsValid(owner))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("report " INT64_FORMAT " does not exist", report_id),
				 errhint("Drop the leftover trigger \"%s\" of this table.", trigdata->tg_trigger->tgname)));
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(owner, save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	SPI_connect();
	if (SPI_register_trigger_data(trigdata) != SPI_OK_TD_REGISTER)
		elog(ERROR, "could not register the transition tables of report " INT64_FORMAT, report_id);

	/* the input's expression, read as the owner (row-level security applies) */
	args[0] = Int64GetDatum(report_id);
	args[1] = ObjectIdGetDatum(RelationGetRelid(trigdata->tg_relation));
	args[2] = ObjectIdGetDatum(owner);
	if (SPI_execute_with_args("SELECT i.expression, r.search_path, r.time_zone FROM pipeline.report_inputs i "
							  "JOIN pipeline.reports r ON r.id OPERATOR(pg_catalog.=) i.report_id "
							  "WHERE i.report_id OPERATOR(pg_catalog.=) $1 "
							  "AND i.input OPERATOR(pg_catalog.=) $2 "
							  "AND r.owner::pg_catalog.oid OPERATOR(pg_catalog.=) $3 "
							  "AND i.owner OPERATOR(pg_catalog.=) r.owner",
							  3, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read pipeline.report_inputs");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("report " INT64_FORMAT " does not read table \"%s\"", report_id,
						RelationGetRelationName(trigdata->tg_relation)),
				 errhint("Do not use pipeline.report_input_trigger() directly: pipeline.create_report creates its triggers.")));
	expression = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	search_path = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	time_zone = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);

	nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", search_path, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	/* the report's time zone, and text every session reads back the same */
	(void) set_config_option("TimeZone", time_zone, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("datestyle", "ISO, YMD", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("intervalstyle", "iso_8601", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
	{
		/* every partition may have changed */
		if (SPI_execute_with_args("INSERT INTO pipeline.report_dirty (report_id, owner, part, everything) "
								  "SELECT r.id, r.owner, NULL, true FROM pipeline.reports r "
								  "WHERE r.id OPERATOR(pg_catalog.=) $1",
								  1, argtypes, args, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not mark report " INT64_FORMAT " for a full refresh", report_id);
	}
	else
	{
		if (trigdata->tg_newtable)
			MarkPartitions(report_id, owner, expression, "pipeline_new");
		if (trigdata->tg_oldtable)
			MarkPartitions(report_id, owner, expression, "pipeline_old");
	}
	AtEOXact_GUC(true, nestlevel);
	SPI_finish();
	SetUserIdAndSecContext(save_userid, save_sec_context);
	return PointerGetDatum(NULL);
}
