/*-------------------------------------------------------------------------
 *
 * catalog.c
 *		SPI access to the pipeline.* catalog tables, and the trigger that
 *		tells the supervisor about changes to them.
 *
 * Queries name every object with its schema and pass every value as a
 * parameter.  Workers run them as the source's owner, so row-level security
 * and table privileges apply to them as to the owner's own session.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "catalog.h"
#include "ddl_watch.h"

PG_FUNCTION_INFO_V1(pipeline_catalog_changed);

/*
 * Statement trigger on catalog tables: wake the supervisor at commit.  Not
 * for the supervisor's own changes: it would wake itself forever.
 */
Datum
pipeline_catalog_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("pipeline.catalog_changed() must be called as a trigger")));
	if (MyBgworkerEntry == NULL || strcmp(MyBgworkerEntry->bgw_type, "pg_pipeline supervisor") != 0)
		PipelineWakeSupervisorAtCommit();
	return PointerGetDatum(NULL);
}

/*
 * Start a transaction with SPI connected and a snapshot, as the catalog
 * functions below need; PipelineSpiCommit() undoes all three and commits.
 */
void
PipelineSpiBegin(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
}

void
PipelineSpiCommit(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
}

static char *
TextOrNull(HeapTuple tuple, TupleDesc desc, int attno)
{
	return SPI_getvalue(tuple, desc, attno);
}

static Datum
GetDatum(HeapTuple tuple, TupleDesc desc, int attno, bool *isnull)
{
	return SPI_getbinval(tuple, desc, attno, isnull);
}

/* A text[] as C strings, in the current memory context */
/*
 * The owner of row "id" of pipeline.<table> (aggregates, reports), or
 * InvalidOid.  Triggers fire as whoever writes a table, to whom row-level
 * security hides the definition, so the catalog is read directly here; the
 * owner is a role name in dumps, so it survives pg_dump/pg_restore into
 * another cluster, where a role's OID differs.
 */
Oid
PipelineCatalogOwner(const char *table, int64 id)
{
	Oid			relid = get_relname_relid(table, get_namespace_oid("pipeline", false));
	Relation	rel;
	TableScanDesc scan;
	TupleTableSlot *slot;
	Snapshot	snapshot;
	AttrNumber	id_attnum;
	AttrNumber	owner_attnum;
	Oid			owner = InvalidOid;

	if (!OidIsValid(relid))
		elog(ERROR, "catalog table pipeline.%s is missing", table);
	id_attnum = get_attnum(relid, "id");
	owner_attnum = get_attnum(relid, "owner");
	rel = table_open(relid, AccessShareLock);
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	scan = table_beginscan(rel, snapshot, 0, NULL);
	slot = table_slot_create(rel, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;

		if (DatumGetInt64(slot_getattr(slot, id_attnum, &isnull)) == id)
		{
			owner = DatumGetObjectId(slot_getattr(slot, owner_attnum, &isnull));
			break;
		}
	}
	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
	UnregisterSnapshot(snapshot);
	table_close(rel, AccessShareLock);
	return owner;
}

void
PipelineSplitTextArray(Datum array, int *n, char ***out)
{
	Datum	   *elems;
	bool	   *nulls;

	deconstruct_array(DatumGetArrayTypeP(array), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, n);
	*out = palloc(sizeof(char *) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
	{
		/* create_kafka_source refuses them: a catalog row edited by hand */
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("a column or path list in pg_pipeline's catalog holds a NULL"),
					 errhint("Drop the source and create it again with pipeline.create_kafka_source.")));
		(*out)[i] = TextDatumGetCString(elems[i]);
	}
}

/*
 * The definition of one source, allocated in the caller's memory context
 * (SPI's own context is gone after SPI_finish); NULL if it does not exist.
 */
KafkaSourceDef *
PipelineLoadKafkaSource(int64 source_id)
{
	MemoryContext caller = CurrentMemoryContext;
	Oid			argtypes[1] = {INT8OID};
	Datum		args[1] = {Int64GetDatum(source_id)};
	KafkaSourceDef *def;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	MemoryContext spi;

	if (SPI_execute_with_args("SELECT name, owner::oid, brokers, topic, target::oid, format, "
							  "columns, paths, key_column, partition_column, offset_column, "
							  "timestamp_column, start_position, batch_size, "
							  "max_batch_latency_ms, parallelism, on_error, enabled, "
							  "COALESCE(max_error_rate, -1), partitions, store_rows, headers_column "
							  "FROM pipeline.kafka_sources WHERE id OPERATOR(pg_catalog.=) $1",
							  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read pipeline.kafka_sources");
	if (SPI_processed == 0)
		return NULL;

	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	spi = MemoryContextSwitchTo(caller);
	def = palloc0(sizeof(KafkaSourceDef));
	def->id = source_id;
	def->name = TextOrNull(tup, desc, 1);
	def->owner = DatumGetObjectId(GetDatum(tup, desc, 2, &isnull));
	def->brokers = TextOrNull(tup, desc, 3);
	def->topic = TextOrNull(tup, desc, 4);
	def->target = DatumGetObjectId(GetDatum(tup, desc, 5, &isnull));
	def->format = TextOrNull(tup, desc, 6);
	PipelineSplitTextArray(GetDatum(tup, desc, 7, &isnull), &def->ncolumns, &def->columns);
	PipelineSplitTextArray(GetDatum(tup, desc, 8, &isnull), &def->ncolumns, &def->paths);
	def->key_column = TextOrNull(tup, desc, 9);
	def->partition_column = TextOrNull(tup, desc, 10);
	def->offset_column = TextOrNull(tup, desc, 11);
	def->timestamp_column = TextOrNull(tup, desc, 12);
	def->start_position = TextOrNull(tup, desc, 13);
	def->batch_size = DatumGetInt32(GetDatum(tup, desc, 14, &isnull));
	def->max_batch_latency_ms = DatumGetInt32(GetDatum(tup, desc, 15, &isnull));
	def->parallelism = DatumGetInt32(GetDatum(tup, desc, 16, &isnull));
	def->on_error = TextOrNull(tup, desc, 17);
	def->enabled = DatumGetBool(GetDatum(tup, desc, 18, &isnull));
	def->max_error_rate = DatumGetFloat8(GetDatum(tup, desc, 19, &isnull));
	def->store_rows = DatumGetBool(GetDatum(tup, desc, 21, &isnull));
	def->headers_column = TextOrNull(tup, desc, 22);
	{
		Datum		wanted = GetDatum(tup, desc, 20, &isnull);

		if (!isnull)
		{
			Datum	   *elems;
			bool	   *nulls;

			deconstruct_array(DatumGetArrayTypeP(wanted), INT4OID, 4, true, TYPALIGN_INT,
							  &elems, &nulls, &def->nwanted_partitions);
			def->wanted_partitions = palloc(sizeof(int32) * Max(def->nwanted_partitions, 1));
			for (int i = 0; i < def->nwanted_partitions; i++)
				def->wanted_partitions[i] = DatumGetInt32(elems[i]);
		}
	}
	MemoryContextSwitchTo(spi);

	if (SPI_execute_with_args("SELECT name, value FROM pipeline.kafka_source_properties "
							  "WHERE source_id OPERATOR(pg_catalog.=) $1 ORDER BY name",
							  1, argtypes, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read pipeline.kafka_source_properties");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		spi = MemoryContextSwitchTo(caller);
		def->property_names = lappend(def->property_names,
									  SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
		def->property_values = lappend(def->property_values,
									   SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2));
		MemoryContextSwitchTo(spi);
	}
	return def;
}

/* The enabled sources and their worker counts, in the caller's context */
List *
PipelineLoadEnabledKafkaSources(void)
{
	MemoryContext caller = CurrentMemoryContext;
	List	   *result = NIL;

	if (SPI_execute("SELECT id, owner::oid, parallelism, generation "
					"FROM pipeline.kafka_sources WHERE enabled", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read pipeline.kafka_sources");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		KafkaSourceWorkers *src = MemoryContextAlloc(caller, sizeof(KafkaSourceWorkers));

		src->id = DatumGetInt64(GetDatum(tup, desc, 1, &isnull));
		src->owner = DatumGetObjectId(GetDatum(tup, desc, 2, &isnull));
		src->parallelism = DatumGetInt32(GetDatum(tup, desc, 3, &isnull));
		src->generation = DatumGetInt64(GetDatum(tup, desc, 4, &isnull));
		result = lappend(result, src);
	}
	return result;
}

/* The committed next offset of a partition; false if none is stored */
bool
PipelineLoadKafkaOffset(int64 source_id, int32 partition, int64 *next_offset)
{
	Oid			argtypes[2] = {INT8OID, INT4OID};
	Datum		args[2] = {Int64GetDatum(source_id), Int32GetDatum(partition)};
	bool		isnull;

	if (SPI_execute_with_args("SELECT next_offset FROM pipeline.kafka_offsets "
							  "WHERE source_id OPERATOR(pg_catalog.=) $1 "
							  "AND partition OPERATOR(pg_catalog.=) $2",
							  2, argtypes, args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read pipeline.kafka_offsets");
	if (SPI_processed == 0)
		return false;
	*next_offset = DatumGetInt64(GetDatum(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	return true;
}

/* Store the start position of a partition seen for the first time */
void
PipelineInitKafkaOffset(int64 source_id, int32 partition, int64 next_offset)
{
	Oid			argtypes[3] = {INT8OID, INT4OID, INT8OID};
	Datum		args[3] = {Int64GetDatum(source_id), Int32GetDatum(partition),
	Int64GetDatum(next_offset)};

	if (SPI_execute_with_args("INSERT INTO pipeline.kafka_offsets (source_id, partition, next_offset) "
							  "VALUES ($1, $2, $3) ON CONFLICT (source_id, partition) DO NOTHING",
							  3, argtypes, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not write pipeline.kafka_offsets");
}

/*
 * Move the committed offsets of n partitions from expected to next, in the
 * batch's transaction, with one statement.  The WHERE on the old values
 * fences out any other worker that read the same partitions: if one of them
 * committed first, fewer rows match, this batch fails and is read again from
 * the new position.  A negative high watermark is stored as unknown.
 */
void
PipelineAdvanceKafkaOffsets(KafkaSourceDef *source, int n, const int32 *partitions,
							const int64 *expected, const int64 *next, const int64 *high,
							const int64 *minute_messages, const int64 *minute_bytes)
{
	static SPIPlanPtr plan = NULL;
	Datum	   *parts = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *exp = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *nxt = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *hw = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *msgs = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *bytes = palloc(sizeof(Datum) * Max(n, 1));
	Datum		args[7];

	if (n == 0)
		return;
	if (plan == NULL)
	{
		Oid			argtypes[7] = {INT8OID, INT4ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID,
		INT8ARRAYOID, INT8ARRAYOID};

		plan = SPI_prepare("UPDATE pipeline.kafka_offsets o "
						   "SET next_offset = v.next, updated_at = pg_catalog.now(), "
						   "high_watermark = CASE WHEN v.high OPERATOR(pg_catalog.>=) 0 THEN v.high END, "
						   "messages_last_minute = v.msgs, bytes_last_minute = v.bytes "
						   "FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3), pg_catalog.unnest($4), "
						   "pg_catalog.unnest($5), pg_catalog.unnest($6), pg_catalog.unnest($7)) "
						   "AS v(part, expected, next, high, msgs, bytes) "
						   "WHERE o.source_id OPERATOR(pg_catalog.=) $1 "
						   "AND o.partition OPERATOR(pg_catalog.=) v.part "
						   "AND o.next_offset OPERATOR(pg_catalog.=) v.expected",
						   7, argtypes);
		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "could not prepare the offset update: %s", SPI_result_code_string(SPI_result));
	}
	for (int i = 0; i < n; i++)
	{
		parts[i] = Int32GetDatum(partitions[i]);
		exp[i] = Int64GetDatum(expected[i]);
		nxt[i] = Int64GetDatum(next[i]);
		hw[i] = Int64GetDatum(high[i]);
		msgs[i] = Int64GetDatum(minute_messages[i]);
		bytes[i] = Int64GetDatum(minute_bytes[i]);
	}
	args[0] = Int64GetDatum(source->id);
	args[1] = PointerGetDatum(construct_array(parts, n, INT4OID, 4, true, TYPALIGN_INT));
	args[2] = PointerGetDatum(construct_array(exp, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[3] = PointerGetDatum(construct_array(nxt, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[4] = PointerGetDatum(construct_array(hw, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[5] = PointerGetDatum(construct_array(msgs, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[6] = PointerGetDatum(construct_array(bytes, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));

	if (SPI_execute_plan(plan, args, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not write pipeline.kafka_offsets");
	if (SPI_processed != (uint64) n)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("offsets of kafka source \"%s\" were moved by someone else", source->name),
				 errdetail("%d of %d partitions still had the offsets this worker read from.",
						   (int) SPI_processed, n),
				 errhint("The batch is read again from the committed offsets.")));
}

static Datum
ByteaDatum(const char *data, int len)
{
	bytea	   *b = palloc(VARHDRSZ + len);

	SET_VARSIZE(b, VARHDRSZ + len);
	memcpy(VARDATA(b), data, len);
	return PointerGetDatum(b);
}

void
PipelineInsertDeadLetter(KafkaSourceDef *source, int32 partition, int64 offset,
						 const char *key, int key_len, const char *payload, int payload_len,
						 const char *error, const char *sqlstate)
{
	Oid			argtypes[8] = {INT8OID, TEXTOID, INT4OID, INT8OID, BYTEAOID, BYTEAOID, TEXTOID, TEXTOID};
	Datum		args[8];
	char		nulls[8] = "        ";

	args[0] = Int64GetDatum(source->id);
	args[1] = CStringGetTextDatum(source->name);
	args[2] = Int32GetDatum(partition);
	args[3] = Int64GetDatum(offset);
	if (key)
		args[4] = ByteaDatum(key, key_len);
	else
		nulls[4] = 'n';
	if (payload)
		args[5] = ByteaDatum(payload, payload_len);
	else
		nulls[5] = 'n';
	args[6] = CStringGetTextDatum(error);
	if (sqlstate)
		args[7] = CStringGetTextDatum(sqlstate);
	else
		nulls[7] = 'n';

	if (SPI_execute_with_args("INSERT INTO pipeline.kafka_dead_letters "
							  "(source_id, source_name, partition, \"offset\", key, payload, error, sqlstate) "
							  "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
							  8, argtypes, args, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not write pipeline.kafka_dead_letters");
}

/*
 * Record the last error of a source for pipeline.kafka_status, in a
 * transaction of its own (the failed one is gone); pause stops the source.
 * A failed batch also counts towards PIPELINE_MAX_FAILED_BATCHES in a row,
 * after which the source is paused: an error that is not the message's
 * fault but never goes away must reach a human, not loop forever.
 */
void
PipelineRecordSourceError(int64 source_id, const char *error, bool pause, bool failed_batch)
{
	Oid			argtypes[5] = {INT8OID, TEXTOID, BOOLOID, BOOLOID, INT4OID};
	Datum		args[5] = {Int64GetDatum(source_id), CStringGetTextDatum(error),
		BoolGetDatum(pause), BoolGetDatum(failed_batch),
	Int32GetDatum(PIPELINE_MAX_FAILED_BATCHES)};

	PipelineSpiBegin();
	if (SPI_execute_with_args("WITH counted AS ("
							  " SELECT id, failed_batches OPERATOR(pg_catalog.+) $4::int AS failed,"
							  " $3 OR failed_batches OPERATOR(pg_catalog.+) $4::int OPERATOR(pg_catalog.>=) $5 AS stop"
							  " FROM pipeline.kafka_sources WHERE id OPERATOR(pg_catalog.=) $1) "
							  "UPDATE pipeline.kafka_sources s SET last_error = $2, "
							  "last_error_at = pg_catalog.now(), failed_batches = c.failed, "
							  "enabled = s.enabled AND NOT c.stop, "
							  "paused_reason = CASE WHEN $3 THEN $2 "
							  " WHEN c.stop THEN pg_catalog.format('paused after %s failed batches in a row: %s', c.failed, $2) "
							  " ELSE s.paused_reason END "
							  "FROM counted c WHERE s.id OPERATOR(pg_catalog.=) c.id",
							  5, argtypes, args, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not write pipeline.kafka_sources");
	PipelineSpiCommit();
}

/* A batch went through: the count of failed batches in a row starts again */
void
PipelineResetSourceFailures(int64 source_id)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		args[1] = {Int64GetDatum(source_id)};

	if (SPI_execute_with_args("UPDATE pipeline.kafka_sources SET failed_batches = 0 "
							  "WHERE id OPERATOR(pg_catalog.=) $1 "
							  "AND failed_batches OPERATOR(pg_catalog.<>) 0",
							  1, argtypes, args, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not write pipeline.kafka_sources");
}

/* Type of a column of a relation, InvalidOid if there is no such column */
Oid
PipelineColumnType(Oid relid, const char *column)
{
	AttrNumber	attnum = get_attnum(relid, column);

	return attnum == InvalidAttrNumber ? InvalidOid : get_atttype(relid, attnum);
}

/*
 * Run as a pipeline's owner for the work a trigger does for it: a
 * restricted security context, and a GUC nest level with the search path
 * pinned (more settings may be saved in it).  Returns the nest level for
 * PipelineLeaveOwner.
 */
int
PipelineEnterOwner(Oid owner, Oid *save_userid, int *save_sec_context)
{
	int			nestlevel;

	GetUserIdAndSecContext(save_userid, save_sec_context);
	SetUserIdAndSecContext(owner, *save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return nestlevel;
}

void
PipelineLeaveOwner(int nestlevel, Oid save_userid, int save_sec_context)
{
	AtEOXact_GUC(true, nestlevel);
	SetUserIdAndSecContext(save_userid, save_sec_context);
}

/*
 * The schema-qualified, quoted name of a table a pipeline object made, or
 * an error naming the object ("fraud scorer") and how to drop it.
 */
char *
PipelineQualifiedTable(Oid relid, const char *object, const char *drop_hint)
{
	char	   *relname = get_rel_name(relid);

	if (relname == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("a table of this %s was dropped", object),
				 errhint("%s", drop_hint)));
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)), relname);
}
