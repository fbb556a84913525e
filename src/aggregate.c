/*-------------------------------------------------------------------------
 *
 * aggregate.c
 *		Continuous aggregates: a GROUP BY query over a table, kept current
 *		by folding each statement's new rows into stored transition states.
 *
 * Definition.  pipeline.create_aggregate hands the query to
 * pipeline_aggregate_describe, which checks it (one table, GROUP BY keys
 * and bare aggregates that PostgreSQL can combine) and deparses each key,
 * aggregate and the WHERE clause with qualified names.  Those pieces, not
 * a node tree, are stored, so the definition survives pg_dump and upgrades.
 *
 * Folding.  A statement-level AFTER INSERT trigger with a transition table
 * hands the inserted rows to Fold(), which runs PostgreSQL's own
 * partial-aggregation machinery:
 *   1. the query over the new rows, planned normally and then switched to
 *      partial mode (AGGSPLIT_INITIAL_SERIAL): one state per touched group;
 *   2. the stored states of those groups, locked in a fixed order, plus the
 *      new ones, through a combine-mode Agg: the new state per group;
 *   3. the new states through a final-mode Agg: the finished values, which
 *      are upserted into the output table.
 * Plans 2 and 3 are parsed with count() placeholders whose Aggrefs are then
 * replaced by the original aggregates reading a state column, which is how
 * the planner itself builds combining aggregates for parallel query.
 * Everything happens in the writer's transaction, so the states commit or
 * roll back with the rows (and with a Kafka source's offsets).
 *
 * State rows are found by __group, a hash of the keys, and matched with
 * IS NOT DISTINCT FROM so that NULL keys form groups as GROUP BY does.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_aggregate.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "executor/tstoreReceiver.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "optimizer/planner.h"
#include "parser/analyze.h"
#include "parser/parse_agg.h"
#include "parser/parser.h"
#include "rewrite/rewriteHandler.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/queryenvironment.h"
#include "utils/regproc.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/ruleutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#include "aggregate.h"
#include "catalog.h"

PG_FUNCTION_INFO_V1(pipeline_aggregate_describe);
PG_FUNCTION_INFO_V1(pipeline_aggregate_trigger);
PG_FUNCTION_INFO_V1(pipeline_aggregate_backfill);
PG_FUNCTION_INFO_V1(pipeline_aggregate_window);
PG_FUNCTION_INFO_V1(pipeline_aggregate_describe_rollup);
PG_FUNCTION_INFO_V1(pipeline_aggregate_rollup_recompute);

/* Combine stored and new states, keeping them serialised */
#define AGGSPLIT_COMBINE_SERIAL \
	(AGGSPLITOP_COMBINE | AGGSPLITOP_DESERIALIZE | AGGSPLITOP_SERIALIZE | AGGSPLITOP_SKIPFINAL)

/* An aggregate's definition, as stored in pipeline.aggregates */
/*
 * Every tuplestore made while folding, ended before SPI_finish: one that
 * spilled to disk would otherwise leave its temporary file open until the
 * end of the transaction.
 */
static List *fold_tuplestores = NIL;

/*
 * Store a state row read from a state table with its values detoasted.
 * Serialized transition states reach deserialization functions as they are
 * stored, and some extensions' functions read them without detoasting
 * (tdigest's does): a large state, compressed or moved out of line by
 * TOAST, would be read as garbage.  PostgreSQL itself only ever hands them
 * states it has just serialized.
 */
static void
PutStateTuple(Tuplestorestate *rows, HeapTuple tuple, TupleDesc desc)
{
	Datum	   *values = palloc(sizeof(Datum) * desc->natts);
	bool	   *nulls = palloc(sizeof(bool) * desc->natts);

	heap_deform_tuple(tuple, desc, values, nulls);
	for (int i = 0; i < desc->natts; i++)
		if (!nulls[i] && TupleDescAttr(desc, i)->attlen == -1 &&
			VARATT_IS_EXTENDED(DatumGetPointer(values[i])))
			values[i] = PointerGetDatum(detoast_attr((struct varlena *) DatumGetPointer(values[i])));
	tuplestore_putvalues(rows, desc, values, nulls);
	pfree(values);
	pfree(nulls);
}

static Tuplestorestate *
NewTuplestore(void)
{
	Tuplestorestate *rows = tuplestore_begin_heap(false, false, work_mem);
	MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);

	fold_tuplestores = lappend(fold_tuplestores, rows);
	MemoryContextSwitchTo(old);
	return rows;
}

static void
EndTuplestores(void)
{
	ListCell   *lc;

	foreach(lc, fold_tuplestores)
		tuplestore_end(lfirst(lc));
	list_free(fold_tuplestores);
	fold_tuplestores = NIL;
}

typedef struct AggregateDef
{
	int64		id;
	Oid			owner;
	Oid			source;
	Oid			output;
	Oid			state;
	int			ncolumns;		/* output columns, in the query's order */
	char	  **names;
	char	  **exprs;			/* deparsed, over the source aliased "src" */
	bool	   *is_key;
	char	   *where_clause;	/* deparsed, or NULL */
	char	   *search_path;	/* for the deparsed text */
	char	   *window_pane;	/* sliding window: its pane key, or NULL */
	char	   *window_size;	/* and its length, an interval */
	int64		rollup_of;		/* a rollup: the aggregate whose states it combines, or 0 */
	char	   *time_key;		/* with allowed_lateness: the key whose age is judged */
	char	   *allowed_lateness;	/* an interval, or NULL */
	Oid			late_table;		/* where streamed rows later than that go */
	char	   *late_filter;	/* while folding a stream: keeps the rows in time */
} AggregateDef;

/* ---------------------------------------------------------------------
 * Definition: checking and deparsing the query
 * ---------------------------------------------------------------------
 */

static void
RefuseQuery(const char *message, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("%s", message),
			 errhint("%s", hint)));
}

static void
CheckQueryShape(Query *query)
{
	RangeTblEntry *rte;

	if (query->commandType != CMD_SELECT || query->utilityStmt != NULL)
		RefuseQuery("the query of an aggregate must be a SELECT",
					"Write SELECT keys, aggregates FROM table GROUP BY keys.");
	if (query->cteList != NIL)
		RefuseQuery("an aggregate's query cannot have a WITH clause",
					"Aggregate one table directly; put other logic in a view over the output table.");
	if (query->setOperations != NULL)
		RefuseQuery("an aggregate's query cannot use UNION, INTERSECT or EXCEPT",
					"Create one aggregate per input table.");
	if (query->hasWindowFuncs)
		RefuseQuery("an aggregate's query cannot use window functions",
					"Compute window functions in a query over the output table.");
	if (query->hasTargetSRFs)
		RefuseQuery("an aggregate's query cannot use set-returning functions in its select list",
					"Aggregate plain values of each row.");
	if (query->hasSubLinks)
		RefuseQuery("an aggregate's query cannot contain subqueries",
					"Aggregate one table; join other data in a view over the output table.");
	if (query->sortClause != NIL || query->limitCount != NULL || query->limitOffset != NULL)
		RefuseQuery("an aggregate's query cannot have ORDER BY, LIMIT or OFFSET",
					"The output table holds every group; order and limit when you query it.");
	if (query->distinctClause != NIL)
		RefuseQuery("an aggregate's query cannot use SELECT DISTINCT",
					"GROUP BY the columns instead.");
	if (query->havingQual != NULL)
		RefuseQuery("an aggregate's query cannot have HAVING",
					"Filter the output table when you query it, for example in a view.");
	if (query->groupingSets != NIL)
		RefuseQuery("an aggregate's query cannot use GROUPING SETS, ROLLUP or CUBE",
					"Create one aggregate per grouping, or roll one aggregate up into another.");
	if (query->rowMarks != NIL)
		RefuseQuery("an aggregate's query cannot use FOR UPDATE or FOR SHARE",
					"Remove the locking clause.");
	if (!query->hasAggs)
		RefuseQuery("the query of an aggregate has no aggregate function",
					"Select at least one aggregate, for example count(*) or sum(amount).");
	if (query->groupClause == NIL)
		RefuseQuery("the query of an aggregate needs a GROUP BY clause",
					"Group by at least one key, for example GROUP BY store_id, or by a time bucket.");
	if (list_length(query->rtable) != 1 || list_length(query->jointree->fromlist) != 1)
		RefuseQuery("the query of an aggregate must read exactly one table",
					"Aggregate one table; join other data in a view over the output table.");

	rte = linitial_node(RangeTblEntry, query->rtable);
	if (rte->rtekind != RTE_RELATION || rte->relkind != RELKIND_RELATION)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("an aggregate can only read a plain table"),
				 errhint("Views, partitioned and foreign tables cannot report their new rows; import them into a table first.")));
	if (check_enable_rls(rte->relid, InvalidOid, false) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("table \"%s\" has row-level security", get_rel_name(rte->relid)),
				 errhint("An aggregate sees every row of its table; disable row-level security or aggregate another table.")));
	if (contain_volatile_functions((Node *) query->targetList) ||
		contain_volatile_functions(query->jointree->quals))
		RefuseQuery("an aggregate's query cannot call volatile functions",
					"Keys, arguments and filters must give the same result for the same row, so that folding and recomputing agree.");
}

/* The name of an aggregate for messages, such as "array_agg(integer)" */
static char *
AggregateName(Aggref *aggref)
{
	return format_procedure(aggref->aggfnoid);
}

/* Refuse an aggregate that PostgreSQL cannot split into states to combine */
static void
CheckCombinable(Aggref *aggref)
{
	HeapTuple	tuple = SearchSysCache1(AGGFNOID, ObjectIdGetDatum(aggref->aggfnoid));
	Form_pg_aggregate agg;
	const char *fname;

	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for aggregate %u", aggref->aggfnoid);
	agg = (Form_pg_aggregate) GETSTRUCT(tuple);
	fname = get_func_name(aggref->aggfnoid);

	if (aggref->aggdistinct != NIL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("aggregate %s with DISTINCT cannot be maintained incrementally", AggregateName(aggref)),
				 errhint("Distinct values cannot be combined from partial counts. For approximate distinct counts install hll and use hll_add_agg(hll_hash_...), or group by the value too.")));
	if (agg->aggkind != AGGKIND_NORMAL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("ordered-set aggregate %s cannot be maintained incrementally", AggregateName(aggref)),
				 errhint("Percentiles need every value. For approximate percentiles install tdigest and use tdigest(value, 100), then tdigest_percentile over the output.")));
	if (aggref->aggorder != NIL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("aggregate %s with ORDER BY cannot be maintained incrementally", AggregateName(aggref)),
				 errhint("Partial results cannot be combined in order; remove the ORDER BY.")));
	if (!OidIsValid(agg->aggcombinefn))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("aggregate %s cannot be maintained incrementally", AggregateName(aggref)),
				 strcmp(fname, "array_agg") == 0 || strcmp(fname, "string_agg") == 0 ||
				 strncmp(fname, "json", 4) == 0 || strcmp(fname, "xmlagg") == 0 ?
				 errhint("%s has no combine function in PostgreSQL 15. Keep the rows and aggregate them in a view, or count them per value with GROUP BY.", fname) :
				 errhint("%s has no combine function, so partial results cannot be merged. Use aggregates that have one (count, sum, avg, min, max, stddev, bool_and, ...).", fname)));
	if (agg->aggtranstype == INTERNALOID &&
		(!OidIsValid(agg->aggserialfn) || !OidIsValid(agg->aggdeserialfn)))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("aggregate %s cannot be maintained incrementally", AggregateName(aggref)),
				 errhint("Its state cannot be stored: it has no serialization functions.")));
	ReleaseSysCache(tuple);
}

/* The type a state is stored as: the transition type, or bytea if internal */
static Oid
StateType(Aggref *aggref)
{
	HeapTuple	tuple = SearchSysCache1(AGGFNOID, ObjectIdGetDatum(aggref->aggfnoid));
	Oid			transtype;

	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for aggregate %u", aggref->aggfnoid);
	transtype = ((Form_pg_aggregate) GETSTRUCT(tuple))->aggtranstype;
	ReleaseSysCache(tuple);
	if (IsPolymorphicType(transtype))
	{
		Oid			inputTypes[FUNC_MAX_ARGS];
		int			nargs = get_aggregate_argtypes(aggref, inputTypes);

		transtype = resolve_aggregate_transtype(aggref->aggfnoid, transtype, inputTypes, nargs);
	}
	return transtype == INTERNALOID ? BYTEAOID : transtype;
}

static Oid
TypeSchema(Oid type)
{
	HeapTuple	tuple = SearchSysCache1(TYPEOID, ObjectIdGetDatum(type));
	Oid			schema;

	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for type %u", type);
	schema = ((Form_pg_type) GETSTRUCT(tuple))->typnamespace;
	ReleaseSysCache(tuple);
	return schema;
}

static void
SetSearchPath(const char *path)
{
	(void) set_config_option("search_path", path, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

static char *
QualifiedName(Oid relid)
{
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
									  get_rel_name(relid));
}

static Datum
TextArray(List *strings)
{
	int			n = list_length(strings);
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	int			i = 0;
	ListCell   *lc;

	foreach(lc, strings)
		elems[i++] = CStringGetTextDatum((char *) lfirst(lc));
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

/*
 * pipeline.aggregate_describe(query, search_path): check an aggregate's
 * query and return its parts, deparsed with qualified names.
 */
Datum
pipeline_aggregate_describe(PG_FUNCTION_ARGS)
{
	char	   *sql = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *search_path = text_to_cstring(PG_GETARG_TEXT_PP(1));
	int			nestlevel = NewGUCNestLevel();
	List	   *raws;
	RawStmt    *raw;
	Query	   *query;
	RangeTblEntry *rte;
	List	   *deparse_context;
	List	   *names = NIL,
			   *exprs = NIL,
			   *kinds = NIL,
			   *types = NIL,
			   *state_types = NIL,
			   *schemas = NIL;
	int			nkeys = 0;
	ListCell   *lc;
	StringInfoData internal_path;
	char	   *where_clause = NULL;
	TupleDesc	result_desc;
	Datum		values[8];
	bool		nulls[8] = {false};

	if (get_call_result_type(fcinfo, NULL, &result_desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	/* names in the query mean what they mean to the caller */
	SetSearchPath(search_path);
	raws = raw_parser(sql, RAW_PARSE_DEFAULT);
	if (list_length(raws) != 1 || !IsA(linitial_node(RawStmt, raws)->stmt, SelectStmt))
		RefuseQuery("the query of an aggregate must be one SELECT",
					"Write SELECT keys, aggregates FROM table GROUP BY keys, without a trailing statement.");
	raw = linitial_node(RawStmt, raws);
	query = parse_analyze_fixedparams(raw, sql, NULL, 0, NULL);
	CheckQueryShape(query);
	rte = linitial_node(RangeTblEntry, query->rtable);
	if (pg_class_aclcheck(rte->relid, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for table %s", get_rel_name(rte->relid)),
				 errhint("An aggregate reads its table as the role that creates it: that role needs SELECT on it.")));

	/* the stored text must not depend on anybody's search_path */
	SetSearchPath("pg_catalog, pg_temp");
	deparse_context = deparse_context_for("src", rte->relid);

	foreach(lc, query->groupClause)
	{
		SortGroupClause *sgc = lfirst_node(SortGroupClause, lc);
		TargetEntry *tle = get_sortgroupclause_tle(sgc, query->targetList);

		if (tle->resjunk)
			RefuseQuery("every GROUP BY expression of an aggregate must be in its select list",
						"Select each key, so that the output table has a column for it.");
	}

	foreach(lc, query->targetList)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);
		char	   *name = tle->resname;
		ListCell   *lc2;

		if (tle->resjunk)
			continue;
		if (name == NULL || strcmp(name, "?column?") == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_COLUMN_REFERENCE),
					 errmsg("column %d of the aggregate's query has no name", tle->resno),
					 errhint("Name it with AS, for example date_trunc('day', ts) AS day.")));
		if (strncmp(name, "__", 2) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_NAME),
					 errmsg("column name \"%s\" is reserved", name),
					 errhint("Names that start with two underscores are pg_pipeline's own; choose another with AS.")));
		foreach(lc2, names)
		{
			if (strcmp((char *) lfirst(lc2), name) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_DUPLICATE_COLUMN),
						 errmsg("column name \"%s\" appears more than once in the aggregate's query", name),
						 errhint("Give each column its own name with AS, for example sum(amount) AS revenue.")));
		}

		if (IsA(tle->expr, Aggref))
		{
			Aggref	   *aggref = (Aggref *) tle->expr;

			CheckCombinable(aggref);
			kinds = lappend(kinds, "aggregate");
			types = lappend(types, format_type_be(aggref->aggtype));
			state_types = lappend(state_types, format_type_be(StateType(aggref)));
		}
		else if (tle->ressortgroupref != 0 &&
				 get_sortgroupref_clause_noerr(tle->ressortgroupref, query->groupClause) != NULL)
		{
			Oid			type = exprType((Node *) tle->expr);
			TypeCacheEntry *tc = lookup_type_cache(type, TYPECACHE_HASH_EXTENDED_PROC);
			char	   *schema;

			if (!OidIsValid(tc->hash_extended_proc))
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot group an aggregate by column \"%s\" of type %s", name, format_type_be(type)),
						 errhint("Keys need a type with a hash function; cast the key, for example to text.")));
			kinds = lappend(kinds, "key");
			types = lappend(types, format_type_with_typemod(type, exprTypmod((Node *) tle->expr)));
			state_types = lappend(state_types, format_type_with_typemod(type, exprTypmod((Node *) tle->expr)));
			/* the key type's operators live in its schema */
			schema = get_namespace_name(TypeSchema(type));
			if (strcmp(schema, "pg_catalog") != 0 && !list_member(schemas, makeString(schema)))
				schemas = lappend(schemas, makeString(schema));
			nkeys++;
		}
		else
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("column \"%s\" of the aggregate's query is neither a GROUP BY key nor an aggregate", name),
					 errhint("Select keys and bare aggregate calls; compute expressions over them, such as sum(a) / count(*), in a view over the output table.")));
		names = lappend(names, name);
		exprs = lappend(exprs, deparse_expression((Node *) tle->expr, deparse_context, true, false));
	}
	if (query->jointree->quals)
		where_clause = deparse_expression(query->jointree->quals, deparse_context, true, false);

	initStringInfo(&internal_path);
	appendStringInfoString(&internal_path, "pg_catalog");
	foreach(lc, schemas)
		appendStringInfo(&internal_path, ", %s", quote_identifier(strVal(lfirst(lc))));
	appendStringInfoString(&internal_path, ", pg_temp");

	AtEOXact_GUC(true, nestlevel);

	values[0] = ObjectIdGetDatum(rte->relid);
	values[1] = TextArray(names);
	values[2] = TextArray(exprs);
	values[3] = TextArray(kinds);
	values[4] = TextArray(types);
	values[5] = TextArray(state_types);
	values[6] = where_clause ? CStringGetTextDatum(where_clause) : (Datum) 0;
	nulls[6] = where_clause == NULL;
	values[7] = CStringGetTextDatum(internal_path.data);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(result_desc), values, nulls)));
}

/*
 * pipeline.aggregate_describe_rollup(base_state, base_keys, keys, search_path):
 * check the keys of a rollup, expressions over the base aggregate's keys such
 * as "store_id, date_trunc('day', hour) AS day", and return them deparsed.
 */
Datum
pipeline_aggregate_describe_rollup(PG_FUNCTION_ARGS)
{
	Oid			base_state = PG_GETARG_OID(0);
	ArrayType  *base_keys_array = PG_GETARG_ARRAYTYPE_P(1);
	char	   *keys = text_to_cstring(PG_GETARG_TEXT_PP(2));
	char	   *search_path = text_to_cstring(PG_GETARG_TEXT_PP(3));
	int			nestlevel = NewGUCNestLevel();
	char	   *sql;
	List	   *raws;
	Query	   *query;
	List	   *deparse_context;
	List	   *names = NIL,
			   *exprs = NIL,
			   *types = NIL;
	Datum	   *base_keys;
	bool	   *base_key_nulls;
	int			nbase_keys;
	ListCell   *lc;
	TupleDesc	result_desc;
	Datum		values[3];
	bool		nulls[3] = {false};

	if (get_call_result_type(fcinfo, NULL, &result_desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	deconstruct_array(base_keys_array, TEXTOID, -1, false, TYPALIGN_INT,
					  &base_keys, &base_key_nulls, &nbase_keys);

	SetSearchPath(search_path);
	sql = psprintf("SELECT %s FROM %s", keys, QualifiedName(base_state));
	raws = raw_parser(sql, RAW_PARSE_DEFAULT);
	if (list_length(raws) != 1 || !IsA(linitial_node(RawStmt, raws)->stmt, SelectStmt))
		RefuseQuery("the keys of a rollup must be a list of expressions",
					"For example 'store_id, date_trunc(''day'', hour) AS day'.");
	query = parse_analyze_fixedparams(linitial_node(RawStmt, raws), sql, NULL, 0, NULL);
	if (query->hasAggs || query->hasWindowFuncs || query->hasTargetSRFs || query->hasSubLinks ||
		query->jointree->quals != NULL || list_length(query->rtable) != 1 ||
		contain_volatile_functions((Node *) query->targetList))
		RefuseQuery("the keys of a rollup must be plain expressions over the keys of its aggregate",
					"The rollup combines every aggregate of its base; list only its keys, for example 'store_id, date_trunc(''day'', hour) AS day'.");

	SetSearchPath("pg_catalog, pg_temp");
	deparse_context = deparse_context_for("src", base_state);
	foreach(lc, query->targetList)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);
		char	   *name = tle->resname;
		Oid			type = exprType((Node *) tle->expr);
		List	   *vars = pull_var_clause((Node *) tle->expr, 0);
		ListCell   *lc2;

		if (name == NULL || strcmp(name, "?column?") == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_COLUMN_REFERENCE),
					 errmsg("key %d of the rollup has no name", tle->resno),
					 errhint("Name it with AS, for example date_trunc('day', hour) AS day.")));
		if (strncmp(name, "__", 2) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_NAME),
					 errmsg("column name \"%s\" is reserved", name),
					 errhint("Names that start with two underscores are pg_pipeline's own; choose another with AS.")));
		foreach(lc2, names)
		{
			if (strcmp((char *) lfirst(lc2), name) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_DUPLICATE_COLUMN),
						 errmsg("key \"%s\" appears more than once in the rollup", name),
						 errhint("Give each key its own name with AS.")));
		}
		foreach(lc2, vars)
		{
			char	   *column = get_attname(base_state, lfirst_node(Var, lc2)->varattno, false);
			bool		is_key = false;

			for (int i = 0; i < nbase_keys; i++)
				is_key |= strcmp(TextDatumGetCString(base_keys[i]), column) == 0;
			if (!is_key)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("key \"%s\" of the rollup uses column \"%s\", which is not a key of its aggregate", name, column),
						 errhint("A rollup regroups the aggregate's groups: its keys can use only the aggregate's keys, and it combines every aggregate.")));
		}
		if (!OidIsValid(lookup_type_cache(type, TYPECACHE_HASH_EXTENDED_PROC)->hash_extended_proc))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot group a rollup by key \"%s\" of type %s", name, format_type_be(type)),
					 errhint("Keys need a type with a hash function; cast the key, for example to text.")));
		names = lappend(names, name);
		exprs = lappend(exprs, deparse_expression((Node *) tle->expr, deparse_context, true, false));
		types = lappend(types, format_type_with_typemod(type, exprTypmod((Node *) tle->expr)));
	}
	AtEOXact_GUC(true, nestlevel);

	values[0] = TextArray(names);
	values[1] = TextArray(exprs);
	values[2] = TextArray(types);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(result_desc), values, nulls)));
}

/* ---------------------------------------------------------------------
 * Folding rows into states
 * ---------------------------------------------------------------------
 */

/* The definition, read as the current role (row-level security applies) */
static AggregateDef *
LoadAggregate(int64 id)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		args[1] = {Int64GetDatum(id)};
	AggregateDef *def;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Datum	   *elems;
	bool	   *elem_nulls;
	int			n;

	if (SPI_execute_with_args("SELECT owner::oid, source::oid, output::oid, state_table::oid, "
							  "column_names, column_exprs, key_columns, where_clause, search_path, "
							  "window_pane, window_size, COALESCE(rollup_of, 0), time_key, "
							  "allowed_lateness, COALESCE(late_table, 0) "
							  "FROM pipeline.aggregates WHERE id OPERATOR(pg_catalog.=) $1",
							  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read pipeline.aggregates");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("aggregate " INT64_FORMAT " does not exist", id),
				 errhint("SELECT name FROM pipeline.aggregates lists the aggregates you own.")));
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	def = palloc0(sizeof(AggregateDef));
	def->id = id;
	def->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull));
	def->source = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull));
	def->output = DatumGetObjectId(SPI_getbinval(tup, desc, 3, &isnull));
	def->state = DatumGetObjectId(SPI_getbinval(tup, desc, 4, &isnull));

	PipelineSplitTextArray(SPI_getbinval(tup, desc, 5, &isnull), &def->ncolumns, &def->names);
	PipelineSplitTextArray(SPI_getbinval(tup, desc, 6, &isnull), &n, &def->exprs);
	deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(tup, desc, 7, &isnull)),
					  BOOLOID, 1, true, TYPALIGN_CHAR, &elems, &elem_nulls, &n);
	def->is_key = palloc(sizeof(bool) * n);
	for (int i = 0; i < n; i++)
		def->is_key[i] = DatumGetBool(elems[i]);
	def->where_clause = SPI_getvalue(tup, desc, 8);
	def->search_path = SPI_getvalue(tup, desc, 9);
	def->window_pane = SPI_getvalue(tup, desc, 10);
	def->window_size = SPI_getvalue(tup, desc, 11);
	def->rollup_of = DatumGetInt64(SPI_getbinval(tup, desc, 12, &isnull));
	def->time_key = SPI_getvalue(tup, desc, 13);
	def->allowed_lateness = SPI_getvalue(tup, desc, 14);
	def->late_table = DatumGetObjectId(SPI_getbinval(tup, desc, 15, &isnull));
	return def;
}

/* "p.a, p.b": the keys, each prefixed with alias */
static char *
KeyList(AggregateDef *def, const char *alias)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < def->ncolumns; i++)
	{
		if (!def->is_key[i])
			continue;
		if (buf.len > 0)
			appendStringInfoString(&buf, ", ");
		if (alias)
			appendStringInfo(&buf, "%s.", alias);
		appendStringInfoString(&buf, quote_identifier(def->names[i]));
	}
	return buf.data;
}

/* "s.__group = hash(n keys) AND s.a IS NOT DISTINCT FROM n.a ..." */
static char *
KeyMatch(AggregateDef *def, const char *state_alias, const char *other_alias)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "%s.__group OPERATOR(pg_catalog.=) pg_catalog.hash_record_extended(ROW(%s), 0)",
					 state_alias, KeyList(def, other_alias));
	for (int i = 0; i < def->ncolumns; i++)
	{
		if (def->is_key[i])
			appendStringInfo(&buf, " AND %s.%s IS NOT DISTINCT FROM %s.%s",
							 state_alias, quote_identifier(def->names[i]),
							 other_alias, quote_identifier(def->names[i]));
	}
	return buf.data;
}

/* "__rows = 0, a = NULL, ...": a group's state row emptied */
static char *
EmptyStates(AggregateDef *def)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "__rows = 0");
	for (int i = 0; i < def->ncolumns; i++)
	{
		if (!def->is_key[i])
			appendStringInfo(&buf, ", %s = NULL", quote_identifier(def->names[i]));
	}
	return buf.data;
}

static int
KeyCount(AggregateDef *def)
{
	int			n = 0;

	for (int i = 0; i < def->ncolumns; i++)
		n += def->is_key[i];
	return n;
}

static char *
GroupByPositions(AggregateDef *def)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < def->ncolumns; i++)
	{
		if (def->is_key[i])
			appendStringInfo(&buf, "%s%d", buf.len > 0 ? ", " : "", i + 1);
	}
	return buf.data;
}

/*
 * The user's query over "from", with a row count, to run in partial mode;
 * with only_touched, restricted to the groups in pipeline_touched.
 */
static char *
PartialQuery(AggregateDef *def, const char *from, bool only_touched)
{
	StringInfoData sql;

	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT ");
	for (int i = 0; i < def->ncolumns; i++)
		appendStringInfo(&sql, "%s AS %s, ", def->exprs[i], quote_identifier(def->names[i]));
	appendStringInfo(&sql, "pg_catalog.count(*) AS __rows FROM %s src WHERE %s", from,
					 def->where_clause ? def->where_clause : "true");
	if (def->late_filter)
		appendStringInfo(&sql, " AND %s", def->late_filter);
	if (only_touched)
	{
		appendStringInfoString(&sql, " AND EXISTS (SELECT FROM pipeline_touched t WHERE true");
		for (int i = 0; i < def->ncolumns; i++)
		{
			if (def->is_key[i])
				appendStringInfo(&sql, " AND t.%s IS NOT DISTINCT FROM (%s)",
								 quote_identifier(def->names[i]), def->exprs[i]);
		}
		appendStringInfoChar(&sql, ')');
	}
	appendStringInfo(&sql, " GROUP BY %s", GroupByPositions(def));
	return sql.data;
}

/* Grouping over states in "from", with count() standing in for each aggregate */
static char *
StateQuery(AggregateDef *def, const char *from)
{
	StringInfoData sql;

	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT ");
	for (int i = 0; i < def->ncolumns; i++)
	{
		const char *name = quote_identifier(def->names[i]);

		if (def->is_key[i])
			appendStringInfo(&sql, "%s, ", name);
		else
			appendStringInfo(&sql, "pg_catalog.count(%s) AS %s, ", name, name);
	}
	appendStringInfo(&sql, "pg_catalog.count(__rows) AS __rows FROM %s GROUP BY %s",
					 from, GroupByPositions(def));
	return sql.data;
}

/* Replace the count() placeholders by the aggregates they stand for */
static void
ReplacePlaceholders(Query *query, List *aggrefs)
{
	ListCell   *next = list_head(aggrefs);
	ListCell   *lc;

	foreach(lc, query->targetList)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);
		Aggref	   *placeholder;
		Aggref	   *combining;

		if (!IsA(tle->expr, Aggref))
			continue;
		placeholder = (Aggref *) tle->expr;
		combining = copyObject(lfirst_node(Aggref, next));
		next = lnext(aggrefs, next);

		/* the one argument of a combining aggregate is the state */
		combining->args = placeholder->args;
		combining->aggfilter = NULL;
		combining->aggdirectargs = NIL;
		combining->aggorder = NIL;
		combining->aggdistinct = NIL;
		combining->aggtranstype = InvalidOid;
		tle->expr = (Expr *) combining;
	}
}

static bool
MarkAggrefs(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (IsA(node, Aggref))
	{
		mark_partial_aggref((Aggref *) node, *(AggSplit *) context);
		return false;
	}
	return expression_tree_walker(node, MarkAggrefs, context);
}

/*
 * Plan one of the three grouping queries and switch its Agg to the given
 * mode.  Without placeholders the query's own Aggrefs are returned, as
 * parsed, in *aggrefs.
 */
static PlannedStmt *
PlanGrouping(const char *sql, QueryEnvironment *env, List *placeholders,
			 AggSplit split, List **aggrefs)
{
	List	   *raws = raw_parser(sql, RAW_PARSE_DEFAULT);
	Query	   *query = parse_analyze_fixedparams(linitial_node(RawStmt, raws), sql, NULL, 0, env);
	PlannedStmt *stmt;
	Agg		   *agg;

	if (placeholders)
		ReplacePlaceholders(query, placeholders);
	else if (aggrefs)
	{
		ListCell   *lc;

		*aggrefs = NIL;
		foreach(lc, query->targetList)
		{
			TargetEntry *tle = lfirst_node(TargetEntry, lc);

			if (IsA(tle->expr, Aggref))
				*aggrefs = lappend(*aggrefs, copyObject(tle->expr));
		}
	}
	query = linitial_node(Query, QueryRewrite(query));
	stmt = pg_plan_query(query, sql, 0, NULL);

	/* a bare GROUP BY plans as one Agg that projects the select list */
	if (!IsA(stmt->planTree, Agg))
		elog(ERROR, "unexpected plan for aggregate query: %s", sql);
	agg = (Agg *) stmt->planTree;
	agg->aggsplit = split;
	(void) expression_tree_walker((Node *) agg->plan.targetlist, MarkAggrefs, &split);
	(void) expression_tree_walker((Node *) agg->plan.qual, MarkAggrefs, &split);
	return stmt;
}

/* Run a plan; its rows end up in a tuplestore */
static Tuplestorestate *
RunPlan(PlannedStmt *stmt, const char *sql, QueryEnvironment *env, TupleDesc *desc)
{
	Tuplestorestate *rows = NewTuplestore();
	DestReceiver *dest = CreateDestReceiver(DestTuplestore);
	QueryDesc  *qd;

	SetTuplestoreDestReceiverParams(dest, rows, CurrentMemoryContext, false, NULL, NULL);
	PushActiveSnapshot(GetTransactionSnapshot());
	qd = CreateQueryDesc(stmt, sql, GetActiveSnapshot(), InvalidSnapshot, dest, NULL, env, 0);
	ExecutorStart(qd, 0);
	*desc = CreateTupleDescCopy(qd->tupDesc);
	ExecutorRun(qd, ForwardScanDirection, 0, true);
	ExecutorFinish(qd);
	ExecutorEnd(qd);
	FreeQueryDesc(qd);
	PopActiveSnapshot();
	dest->rDestroy(dest);
	return rows;
}

static EphemeralNamedRelation
MakeEnr(const char *name, Tuplestorestate *rows, Oid relid, TupleDesc desc)
{
	EphemeralNamedRelation enr = palloc0(sizeof(EphemeralNamedRelationData));

	enr->md.name = pstrdup(name);
	enr->md.reliddesc = relid;
	enr->md.tupdesc = desc;
	enr->md.enrtype = ENR_NAMED_TUPLESTORE;
	enr->md.enrtuples = tuplestore_tuple_count(rows);
	enr->reldata = rows;
	return enr;
}

static void
Execute(const char *sql, int expected)
{
	int			rc = SPI_execute(sql, false, 0);

	if (rc != expected)
		elog(ERROR, "%s failed: %s", sql, SPI_result_code_string(rc));
}

/*
 * The aggregate's query in partial mode over "rows" (a tuplestore in the
 * source's rowtype, or rows_desc), or over the source table itself when rows
 * is NULL,
 * then only for the groups in "touched" if given: one serialised state per
 * group.  Also returns the query's Aggrefs.
 */
static Tuplestorestate *
RunPartial(AggregateDef *def, Tuplestorestate *rows, TupleDesc rows_desc,
		   EphemeralNamedRelation touched, TupleDesc *desc, List **aggrefs)
{
	QueryEnvironment *env = create_queryEnv();
	char	   *sql;
	PlannedStmt *stmt;

	/* the rows are in the source's rowtype, unless rows_desc says otherwise */
	if (rows)
		register_ENR(env, MakeEnr("pipeline_batch", rows, rows_desc ? InvalidOid : def->source,
								  rows_desc));
	if (touched)
		register_ENR(env, touched);
	sql = PartialQuery(def, rows ? "pipeline_batch" : QualifiedName(def->source), touched != NULL);
	stmt = PlanGrouping(sql, env, NIL, AGGSPLIT_INITIAL_SERIAL, aggrefs);
	return RunPlan(stmt, sql, env, desc);
}

/*
 * Combine partial states (from RunPartial) with the stored states of their
 * groups, store the result and upsert the finished values into the output;
 * with feed_rollups, pass the partial states on to the rollups.  Runs inside
 * SPI, as the aggregate's owner.
 */
static void FoldRollups(AggregateDef *def, Tuplestorestate *partial, TupleDesc partial_desc,
						List *aggrefs);

static void
Combine(AggregateDef *def, Tuplestorestate *partial, TupleDesc partial_desc, List *aggrefs,
		bool feed_rollups)
{
	QueryEnvironment *env;
	char	   *state = QualifiedName(def->state);
	char	   *sql;
	PlannedStmt *stmt;
	Tuplestorestate *combine_input,
			   *combined,
			   *final;
	TupleDesc	combined_desc,
				final_desc;
	TupleTableSlot *slot;
	StringInfoData buf;

	if (tuplestore_tuple_count(partial) == 0)
		return;
	SPI_register_relation(MakeEnr("pipeline_partial", partial, InvalidOid, partial_desc));

	/*
	 * Make sure each touched group has a state row, then lock them all in
	 * one order, so that concurrent writers of a group take turns and never
	 * deadlock, and read what they hold.
	 */
	initStringInfo(&buf);
	appendStringInfo(&buf, "INSERT INTO %s AS s (%s, __rows, __group) "
					 "SELECT %s, 0, pg_catalog.hash_record_extended(ROW(%s), 0) FROM pipeline_partial p "
					 "ORDER BY %d ON CONFLICT DO NOTHING",
					 state, KeyList(def, NULL), KeyList(def, "p"), KeyList(def, "p"), KeyCount(def) + 2);
	Execute(buf.data, SPI_OK_INSERT);

	resetStringInfo(&buf);
	appendStringInfoString(&buf, "SELECT ");
	for (int i = 0; i < def->ncolumns; i++)
		appendStringInfo(&buf, "s.%s, ", quote_identifier(def->names[i]));
	appendStringInfo(&buf, "s.__rows FROM %s s JOIN pipeline_partial p ON %s "
					 "ORDER BY s.__group FOR UPDATE OF s",
					 state, KeyMatch(def, "s", "p"));
	Execute(buf.data, SPI_OK_SELECT);

	combine_input = NewTuplestore();
	slot = MakeSingleTupleTableSlot(partial_desc, &TTSOpsMinimalTuple);
	tuplestore_rescan(partial);
	while (tuplestore_gettupleslot(partial, true, false, slot))
		tuplestore_puttupleslot(combine_input, slot);
	ExecDropSingleTupleTableSlot(slot);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		int64		stored_rows = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
															  def->ncolumns + 1, &isnull));

		/* a group's new, empty row has no state to combine */
		if (stored_rows > 0)
			PutStateTuple(combine_input, SPI_tuptable->vals[i], SPI_tuptable->tupdesc);
	}

	/* the new state of every touched group */
	env = create_queryEnv();
	register_ENR(env, MakeEnr("pipeline_combine", combine_input, InvalidOid, partial_desc));
	sql = StateQuery(def, "pipeline_combine");
	stmt = PlanGrouping(sql, env, aggrefs, AGGSPLIT_COMBINE_SERIAL, NULL);
	combined = RunPlan(stmt, sql, env, &combined_desc);
	SPI_register_relation(MakeEnr("pipeline_combined", combined, InvalidOid, combined_desc));

	resetStringInfo(&buf);
	appendStringInfo(&buf, "UPDATE %s s SET __rows = n.__rows", state);
	for (int i = 0; i < def->ncolumns; i++)
	{
		if (!def->is_key[i])
			appendStringInfo(&buf, ", %s = n.%s", quote_identifier(def->names[i]),
							 quote_identifier(def->names[i]));
	}
	appendStringInfo(&buf, " FROM pipeline_combined n WHERE %s", KeyMatch(def, "s", "n"));
	Execute(buf.data, SPI_OK_UPDATE);

	/* finish the values and upsert them into the output table */
	env = create_queryEnv();
	register_ENR(env, MakeEnr("pipeline_combined", combined, InvalidOid, combined_desc));
	sql = StateQuery(def, "pipeline_combined");
	stmt = PlanGrouping(sql, env, aggrefs, AGGSPLIT_FINAL_DESERIAL, NULL);
	final = RunPlan(stmt, sql, env, &final_desc);
	SPI_register_relation(MakeEnr("pipeline_final", final, InvalidOid, final_desc));

	resetStringInfo(&buf);
	appendStringInfo(&buf, "INSERT INTO %s AS o (", QualifiedName(def->output));
	for (int i = 0; i < def->ncolumns; i++)
		appendStringInfo(&buf, "%s%s", i > 0 ? ", " : "", quote_identifier(def->names[i]));
	appendStringInfoString(&buf, ") SELECT ");
	for (int i = 0; i < def->ncolumns; i++)
		appendStringInfo(&buf, "%s%s", i > 0 ? ", " : "", quote_identifier(def->names[i]));
	appendStringInfo(&buf, " FROM pipeline_final ON CONFLICT (%s) DO UPDATE SET ", KeyList(def, NULL));
	for (int i = 0, first = 1; i < def->ncolumns; i++)
	{
		if (def->is_key[i])
			continue;
		appendStringInfo(&buf, "%s%s = EXCLUDED.%s", first ? "" : ", ",
						 quote_identifier(def->names[i]), quote_identifier(def->names[i]));
		first = 0;
	}
	Execute(buf.data, SPI_OK_INSERT);

	SPI_unregister_relation("pipeline_partial");
	SPI_unregister_relation("pipeline_combined");
	SPI_unregister_relation("pipeline_final");
	if (feed_rollups)
		FoldRollups(def, partial, partial_desc, aggrefs);
}

/*
 * Before recomputing the groups listed in the relation "touched": lock their
 * state rows in one order, empty them in place and drop their output rows.
 * Emptied, not deleted: a concurrent writer waiting for these rows then
 * combines into the recomputed state instead of losing it.
 */
static void
ResetGroups(AggregateDef *def, const char *touched)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "SELECT FROM %s s JOIN %s t ON %s ORDER BY s.__group FOR UPDATE OF s",
					 QualifiedName(def->state), touched, KeyMatch(def, "s", "t"));
	Execute(buf.data, SPI_OK_SELECT);
	resetStringInfo(&buf);
	appendStringInfo(&buf, "UPDATE %s s SET %s FROM %s t WHERE %s",
					 QualifiedName(def->state), EmptyStates(def), touched, KeyMatch(def, "s", "t"));
	Execute(buf.data, SPI_OK_UPDATE);
	resetStringInfo(&buf);
	appendStringInfo(&buf, "DELETE FROM %s o USING %s t WHERE true", QualifiedName(def->output), touched);
	for (int i = 0; i < def->ncolumns; i++)
	{
		if (def->is_key[i])
			appendStringInfo(&buf, " AND o.%s IS NOT DISTINCT FROM t.%s",
							 quote_identifier(def->names[i]), quote_identifier(def->names[i]));
	}
	Execute(buf.data, SPI_OK_DELETE);
}

/* ---------------------------------------------------------------------
 * Rollups: aggregates of an aggregate's states (hourly -> daily)
 * ---------------------------------------------------------------------
 */

/* The rollups of an aggregate (the owner's: a rollup has its base's owner) */
static List *
LoadRollups(AggregateDef *def)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		args[1] = {Int64GetDatum(def->id)};
	List	   *ids = NIL;
	List	   *rollups = NIL;
	ListCell   *lc;

	if (SPI_execute_with_args("SELECT id FROM pipeline.aggregates WHERE rollup_of OPERATOR(pg_catalog.=) $1 ORDER BY id",
							  1, argtypes, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read pipeline.aggregates");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		int64	   *id = palloc(sizeof(int64));

		*id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		ids = lappend(ids, id);
	}
	foreach(lc, ids)
		rollups = lappend(rollups, LoadAggregate(*(int64 *) lfirst(lc)));
	return rollups;
}

/*
 * Group states of the base aggregate (in "pipeline_base": its keys, states
 * and __rows) by the rollup's keys, in the given mode: combining (states of
 * the rollup's groups) or final (their finished values).
 */
static Tuplestorestate *
GroupBaseStates(AggregateDef *rollup, Tuplestorestate *base_states, TupleDesc base_desc,
				List *aggrefs, AggSplit split, TupleDesc *desc)
{
	QueryEnvironment *env = create_queryEnv();
	StringInfoData sql;
	PlannedStmt *stmt;

	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT ");
	for (int i = 0; i < rollup->ncolumns; i++)
	{
		const char *name = quote_identifier(rollup->names[i]);

		if (rollup->is_key[i])
			appendStringInfo(&sql, "%s AS %s, ", rollup->exprs[i], name);
		else
			appendStringInfo(&sql, "pg_catalog.count(src.%s) AS %s, ", name, name);
	}
	appendStringInfo(&sql, "pg_catalog.count(src.__rows) AS __rows FROM pipeline_base src GROUP BY %s",
					 GroupByPositions(rollup));
	register_ENR(env, MakeEnr("pipeline_base", base_states, InvalidOid, base_desc));
	stmt = PlanGrouping(sql.data, env, aggrefs, split, NULL);
	return RunPlan(stmt, sql.data, env, desc);
}

/* Fold a base aggregate's partial states into each of its rollups */
static void
FoldRollups(AggregateDef *def, Tuplestorestate *partial, TupleDesc partial_desc, List *aggrefs)
{
	ListCell   *lc;

	foreach(lc, LoadRollups(def))
	{
		AggregateDef *rollup = lfirst(lc);
		TupleDesc	desc;
		Tuplestorestate *states = GroupBaseStates(rollup, partial, partial_desc, aggrefs,
												  AGGSPLIT_COMBINE_SERIAL, &desc);

		Combine(rollup, states, desc, aggrefs, false);
	}
}

/*
 * The stored states of a base aggregate (keys, states, __rows), all of them
 * or, with "touched", those whose rollup keys are in pipeline_rollup_touched.
 */
static Tuplestorestate *
BaseStates(AggregateDef *base, AggregateDef *rollup, bool touched, TupleDesc *desc)
{
	StringInfoData sql;
	Tuplestorestate *states = NewTuplestore();

	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT ");
	for (int i = 0; i < base->ncolumns; i++)
		appendStringInfo(&sql, "src.%s, ", quote_identifier(base->names[i]));
	appendStringInfo(&sql, "src.__rows FROM %s src WHERE src.__rows OPERATOR(pg_catalog.>) 0",
					 QualifiedName(base->state));
	if (touched)
	{
		appendStringInfoString(&sql, " AND EXISTS (SELECT FROM pipeline_rollup_touched t WHERE true");
		for (int i = 0; i < rollup->ncolumns; i++)
		{
			if (rollup->is_key[i])
				appendStringInfo(&sql, " AND t.%s IS NOT DISTINCT FROM (%s)",
								 quote_identifier(rollup->names[i]), rollup->exprs[i]);
		}
		appendStringInfoChar(&sql, ')');
	}
	Execute(sql.data, SPI_OK_SELECT);
	for (uint64 i = 0; i < SPI_processed; i++)
		PutStateTuple(states, SPI_tuptable->vals[i], SPI_tuptable->tupdesc);
	*desc = CreateTupleDescCopy(SPI_tuptable->tupdesc);
	return states;
}

/*
 * The base recomputed the groups in pipeline_touched: recompute the rollup
 * groups they belong to from the base's states.
 */
static void
RecomputeRollups(AggregateDef *def, List *aggrefs)
{
	ListCell   *lc;

	foreach(lc, LoadRollups(def))
	{
		AggregateDef *rollup = lfirst(lc);
		StringInfoData sql;
		Tuplestorestate *touched = NewTuplestore();
		Tuplestorestate *states;
		Tuplestorestate *partial;
		TupleDesc	desc;

		initStringInfo(&sql);
		appendStringInfoString(&sql, "SELECT DISTINCT ");
		for (int i = 0, first = 1; i < rollup->ncolumns; i++)
		{
			if (!rollup->is_key[i])
				continue;
			appendStringInfo(&sql, "%s%s AS %s", first ? "" : ", ", rollup->exprs[i],
							 quote_identifier(rollup->names[i]));
			first = 0;
		}
		appendStringInfoString(&sql, " FROM pipeline_touched src");
		Execute(sql.data, SPI_OK_SELECT);
		for (uint64 i = 0; i < SPI_processed; i++)
			tuplestore_puttuple(touched, SPI_tuptable->vals[i]);
		SPI_register_relation(MakeEnr("pipeline_rollup_touched", touched, InvalidOid,
									  CreateTupleDescCopy(SPI_tuptable->tupdesc)));

		ResetGroups(rollup, "pipeline_rollup_touched");

		states = BaseStates(def, rollup, true, &desc);
		partial = GroupBaseStates(rollup, states, desc, aggrefs, AGGSPLIT_COMBINE_SERIAL, &desc);
		Combine(rollup, partial, desc, aggrefs, false);
		SPI_unregister_relation("pipeline_rollup_touched");
	}
}

/* The base aggregate's Aggrefs, which its rollups combine too */
static List *
BaseAggrefs(AggregateDef *base)
{
	List	   *aggrefs;

	(void) PlanGrouping(PartialQuery(base, QualifiedName(base->source), false), NULL, NIL,
						AGGSPLIT_INITIAL_SERIAL, &aggrefs);
	return aggrefs;
}

/* Fill an empty rollup from all of its base's states */
static void
BackfillRollup(AggregateDef *rollup)
{
	AggregateDef *base = LoadAggregate(rollup->rollup_of);
	List	   *aggrefs = BaseAggrefs(base);
	TupleDesc	desc;
	Tuplestorestate *states = BaseStates(base, rollup, false, &desc);
	Tuplestorestate *partial = GroupBaseStates(rollup, states, desc, aggrefs,
											   AGGSPLIT_COMBINE_SERIAL, &desc);

	Combine(rollup, partial, desc, aggrefs, false);
}

/*
 * Groups recomputed by an UPDATE or DELETE trigger, per aggregate and
 * query.  INSERT ... ON CONFLICT DO UPDATE and MERGE fire their UPDATE
 * trigger before their INSERT trigger; the recomputation already read the
 * rows the query inserted, so its INSERT trigger must not fold them into
 * those groups again.  A query is known by the command id of the snapshot
 * its triggers fire under.
 */
typedef struct RecomputedGroups
{
	int64		aggregate_id;
	CommandId	query_cid;
	Datum		group_hashes;	/* int8[] of the groups' __group */
} RecomputedGroups;

static List *recomputed_groups = NIL;	/* in TopTransactionContext */
static bool recomputed_callback_registered = false;

static void
ForgetRecomputedGroups(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
		recomputed_groups = NIL;
}

/* The query firing the current trigger, or InvalidCommandId */
static CommandId
FiringQuery(void)
{
	return ActiveSnapshotSet() ? GetActiveSnapshot()->curcid : InvalidCommandId;
}

static void
RememberRecomputedGroups(AggregateDef *def, CommandId query_cid)
{
	MemoryContext old;
	RecomputedGroups *entry;
	bool		isnull;
	Datum		hashes;

	if (query_cid == InvalidCommandId)
		return;
	Execute(psprintf("SELECT pg_catalog.array_agg(pg_catalog.hash_record_extended(ROW(%s), 0)) FROM pipeline_touched t",
					 KeyList(def, "t")), SPI_OK_SELECT);
	hashes = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		return;
	if (!recomputed_callback_registered)
	{
		RegisterXactCallback(ForgetRecomputedGroups, NULL);
		recomputed_callback_registered = true;
	}
	old = MemoryContextSwitchTo(TopTransactionContext);
	entry = palloc(sizeof(RecomputedGroups));
	entry->aggregate_id = def->id;
	entry->query_cid = query_cid;
	entry->group_hashes = datumCopy(hashes, false, -1);
	recomputed_groups = lappend(recomputed_groups, entry);
	MemoryContextSwitchTo(old);
}

/*
 * Drop from the partial states the groups that this same query already
 * recomputed; returns the partial states to fold.
 */
static Tuplestorestate *
WithoutRecomputedGroups(AggregateDef *def, CommandId query_cid, Tuplestorestate *partial,
						TupleDesc desc)
{
	ListCell   *lc;
	Tuplestorestate *kept = partial;

	foreach(lc, recomputed_groups)
	{
		RecomputedGroups *entry = lfirst(lc);
		Oid			argtypes[1] = {INT8ARRAYOID};
		Datum		args[1];

		if (entry->aggregate_id != def->id || entry->query_cid != query_cid ||
			query_cid == InvalidCommandId)
			continue;
		args[0] = entry->group_hashes;
		SPI_register_relation(MakeEnr("pipeline_unfiltered", kept, InvalidOid, desc));
		if (SPI_execute_with_args(psprintf("SELECT p.* FROM pipeline_unfiltered p "
										   "WHERE pg_catalog.hash_record_extended(ROW(%s), 0) "
										   "OPERATOR(pg_catalog.<>) ALL ($1)", KeyList(def, "p")),
								  1, argtypes, args, NULL, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not filter recomputed groups");
		SPI_unregister_relation("pipeline_unfiltered");
		kept = NewTuplestore();
		for (uint64 i = 0; i < SPI_processed; i++)
			tuplestore_puttuple(kept, SPI_tuptable->vals[i]);
	}
	return kept;
}

/*
 * Streamed rows whose time key is older than allowed_lateness before the
 * latest time key in the states go to the late table; the fold then skips
 * them.  The horizon is read once, as a constant both statements use: other
 * workers may commit newer keys in between.
 */
static void
DivertLateRows(AggregateDef *def, Tuplestorestate *rows, TupleDesc rows_desc)
{
	const char *key_expr = NULL;
	char	   *late;
	char	   *horizon;

	for (int i = 0; i < def->ncolumns; i++)
	{
		if (def->is_key[i] && strcmp(def->names[i], def->time_key) == 0)
			key_expr = def->exprs[i];
	}
	if (key_expr == NULL)
		elog(ERROR, "time key \"%s\" of aggregate " INT64_FORMAT " is not among its keys",
			 def->time_key, def->id);
	/* the horizon as a typed literal, read and written back in this session */
	Execute(psprintf("SELECT pg_catalog.quote_literal(h::pg_catalog.text) OPERATOR(pg_catalog.||) '::' "
					 "OPERATOR(pg_catalog.||) pg_catalog.format_type(pg_catalog.pg_typeof(h), NULL) "
					 "FROM (SELECT pg_catalog.max(s.%s) OPERATOR(pg_catalog.-) %s::pg_catalog.interval AS h "
					 "FROM %s s) x",
					 quote_identifier(def->time_key), quote_literal_cstr(def->allowed_lateness),
					 QualifiedName(def->state)),
			SPI_OK_SELECT);
	horizon = SPI_processed == 1 ? SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1) : NULL;
	if (horizon == NULL)
		return;					/* no states yet: nothing is late */
	late = psprintf("COALESCE((%s) OPERATOR(pg_catalog.<) %s, false)", key_expr, horizon);
	SPI_register_relation(MakeEnr("pipeline_batch", rows, InvalidOid, rows_desc));
	Execute(psprintf("INSERT INTO %s (%s, event) SELECT %s, pg_catalog.to_jsonb(src) "
					 "FROM pipeline_batch src WHERE (%s) AND %s",
					 QualifiedName(def->late_table), quote_identifier(def->time_key), key_expr,
					 def->where_clause ? def->where_clause : "true", late),
			SPI_OK_INSERT);
	SPI_unregister_relation("pipeline_batch");
	def->late_filter = psprintf("NOT %s", late);
}

/* Fold new rows (or, with rows NULL, the whole source) into the aggregate */
static void
Fold(AggregateDef *def, Tuplestorestate *rows, TupleDesc rows_desc, CommandId query_cid)
{
	TupleDesc	desc;
	List	   *aggrefs;
	Tuplestorestate *partial = RunPartial(def, rows, rows_desc, NULL, &desc, &aggrefs);

	partial = WithoutRecomputedGroups(def, query_cid, partial, desc);
	Combine(def, partial, desc, aggrefs, true);
}

/*
 * Rows were updated or deleted: recompute the groups they belonged to (and,
 * for updates, now belong to) from the source table.  The state rows are
 * locked first, so a concurrent writer of those groups commits before the
 * source is read again, or folds its rows after.
 */
static void
Recompute(AggregateDef *def, Tuplestorestate *old_rows, Tuplestorestate *new_rows,
		  CommandId query_cid)
{
	TupleDesc	desc;
	List	   *aggrefs;
	Tuplestorestate *touched = RunPartial(def, old_rows, NULL, NULL, &desc, &aggrefs);
	Tuplestorestate *partial;
	EphemeralNamedRelation touched_enr;

	if (new_rows)
	{
		TupleDesc	new_desc;
		Tuplestorestate *more = RunPartial(def, new_rows, NULL, NULL, &new_desc, &aggrefs);
		TupleTableSlot *slot = MakeSingleTupleTableSlot(new_desc, &TTSOpsMinimalTuple);

		while (tuplestore_gettupleslot(more, true, false, slot))
			tuplestore_puttupleslot(touched, slot);
		ExecDropSingleTupleTableSlot(slot);
	}
	if (tuplestore_tuple_count(touched) == 0)
		return;
	touched_enr = MakeEnr("pipeline_touched", touched, InvalidOid, desc);
	SPI_register_relation(touched_enr);
	RememberRecomputedGroups(def, query_cid);

	ResetGroups(def, "pipeline_touched");

	partial = RunPartial(def, NULL, NULL, touched_enr, &desc, &aggrefs);
	Combine(def, partial, desc, aggrefs, false);
	RecomputeRollups(def, aggrefs);
	SPI_unregister_relation("pipeline_touched");
}

/* The source was truncated: no groups are left, here or in the rollups */
static void
Clear(AggregateDef *def)
{
	ListCell   *lc;

	Execute(psprintf("DELETE FROM %s", QualifiedName(def->state)), SPI_OK_DELETE);
	Execute(psprintf("DELETE FROM %s", QualifiedName(def->output)), SPI_OK_DELETE);
	foreach(lc, LoadRollups(def))
		Clear(lfirst(lc));
}

typedef enum FoldKind
{
	FOLD_INSERT,
	FOLD_UPDATE,
	FOLD_DELETE,
	FOLD_TRUNCATE,
	FOLD_BACKFILL,
	FOLD_ROWS					/* rows given by the caller, not a trigger */
} FoldKind;

/*
 * Run Fold as the aggregate's owner, restricted as in a security-restricted
 * operation, with the definition's own search_path.  "table" is the table
 * whose rows are folded, which must be the aggregate's source.
 */
static void
FoldAsOwner(int64 id, Oid owner, FoldKind kind, Oid table, TriggerData *trigdata,
			Tuplestorestate *rows, TupleDesc rows_desc)
{
	Oid			save_userid;
	int			save_sec_context;
	int			nestlevel;
	AggregateDef *def;
	List	   *outer_tuplestores = fold_tuplestores;	/* a fold can nest in a fold */
	CommandId	query_cid = FiringQuery();

	fold_tuplestores = NIL;

	/*
	 * Whoever writes the table, the aggregate is read and written as its
	 * owner; the definition itself is visible only to that role.
	 */
	if (!OidIsValid(owner))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("aggregate " INT64_FORMAT " does not exist", id),
				 errhint("Drop the leftover trigger pipeline_aggregate_" INT64_FORMAT "_* of this table.", id)));
	if (kind == FOLD_BACKFILL && !has_privs_of_role(GetUserId(), owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for aggregate " INT64_FORMAT, id),
				 errhint("Only the aggregate's owner can fill it.")));
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(owner, save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	SPI_connect();
	def = LoadAggregate(id);
	if (def->owner != owner ||
		(OidIsValid(table) && table != def->source))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("aggregate " INT64_FORMAT " does not read table \"%s\"", id,
						get_rel_name(table)),
				 errhint("Do not use pipeline.aggregate_trigger() directly: pipeline.create_aggregate creates its trigger.")));
	nestlevel = NewGUCNestLevel();
	SetSearchPath(def->search_path);
	switch (kind)
	{
		case FOLD_INSERT:
			Fold(def, trigdata->tg_newtable, NULL, query_cid);
			break;
		case FOLD_ROWS:
			if (OidIsValid(def->late_table))
				DivertLateRows(def, rows, rows_desc);
			Fold(def, rows, rows_desc, InvalidCommandId);
			break;
		case FOLD_UPDATE:
			Recompute(def, trigdata->tg_oldtable, trigdata->tg_newtable, query_cid);
			break;
		case FOLD_DELETE:
			Recompute(def, trigdata->tg_oldtable, NULL, query_cid);
			break;
		case FOLD_TRUNCATE:
			Clear(def);
			break;
		case FOLD_BACKFILL:
			Execute(psprintf("SELECT FROM %s LIMIT 1", QualifiedName(def->state)), SPI_OK_SELECT);
			if (SPI_processed > 0)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("aggregate " INT64_FORMAT " already holds states", id),
						 errhint("Use pipeline.rebuild_aggregate to recompute it.")));
			if (def->rollup_of != 0)
				BackfillRollup(def);
			else
				Fold(def, NULL, NULL, InvalidCommandId);
			break;
	}
	EndTuplestores();
	fold_tuplestores = outer_tuplestores;
	AtEOXact_GUC(true, nestlevel);
	SetUserIdAndSecContext(save_userid, save_sec_context);
	SPI_finish();
}

/*
 * Trigger: AFTER INSERT, UPDATE, DELETE (each with its transition tables) or
 * TRUNCATE FOR EACH STATEMENT, with the arguments (aggregate id, owner oid).
 * pipeline.create_aggregate names them pipeline_aggregate_<id>_<event>.
 */
Datum
pipeline_aggregate_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	FoldKind	kind;
	int64		id;
	char		expected_name[NAMEDATALEN];
	static const char *const suffix[] = {"insert", "update", "delete", "truncate"};

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event) || trigdata->tg_trigger->tgnargs != 2)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("pipeline.aggregate_trigger() must be fired by pg_pipeline's statement triggers"),
				 errhint("Do not use it directly: pipeline.create_aggregate creates its triggers.")));
	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		kind = FOLD_INSERT;
	else if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		kind = FOLD_UPDATE;
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		kind = FOLD_DELETE;
	else
		kind = FOLD_TRUNCATE;

	id = pg_strtoint64(trigdata->tg_trigger->tgargs[0]);
	snprintf(expected_name, sizeof(expected_name), "pipeline_aggregate_" INT64_FORMAT "_%s",
			 id, suffix[kind]);
	if (strcmp(trigdata->tg_trigger->tgname, expected_name) != 0 ||
		((kind == FOLD_INSERT || kind == FOLD_UPDATE) && trigdata->tg_newtable == NULL) ||
		((kind == FOLD_UPDATE || kind == FOLD_DELETE) && trigdata->tg_oldtable == NULL))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("trigger \"%s\" is not pg_pipeline's", trigdata->tg_trigger->tgname),
				 errhint("Do not use pipeline.aggregate_trigger() directly: pipeline.create_aggregate creates its triggers.")));

	FoldAsOwner(id, PipelineCatalogOwner("aggregates", id), kind,
				RelationGetRelid(trigdata->tg_relation), trigdata, NULL, NULL);
	return PointerGetDatum(NULL);
}

/*
 * pipeline.aggregate_backfill(id, owner): fold the whole source into the
 * aggregate, whose states must be empty.
 */
Datum
pipeline_aggregate_backfill(PG_FUNCTION_ARGS)
{
	FoldAsOwner(PG_GETARG_INT64(0), PG_GETARG_OID(1), FOLD_BACKFILL, InvalidOid, NULL, NULL, NULL);
	PG_RETURN_VOID();
}

/* Whether a trigger is the INSERT trigger of one of our aggregates */
static bool
IsAggregateInsertTrigger(Trigger *trigger)
{
	char		expected_name[NAMEDATALEN];

	if (trigger->tgenabled == TRIGGER_DISABLED || trigger->tgnargs != 2 ||
		!TRIGGER_FOR_INSERT(trigger->tgtype) || TRIGGER_FOR_ROW(trigger->tgtype) ||
		strcmp(get_func_name(trigger->tgfoid), "aggregate_trigger") != 0 ||
		get_func_namespace(trigger->tgfoid) != get_namespace_oid("pipeline", false))
		return false;
	snprintf(expected_name, sizeof(expected_name), "pipeline_aggregate_%s_insert", trigger->tgargs[0]);
	return strcmp(trigger->tgname, expected_name) == 0;
}

/*
 * Fold the rows of "staging", written by the current transaction, into every
 * aggregate over "target", as the aggregates' triggers would have folded them
 * had they been inserted into target.  For Kafka sources that keep no rows.
 */
void
PipelineFoldIntoAggregates(Oid target, Relation staging)
{
	Relation	rel = table_open(target, AccessShareLock);
	Tuplestorestate *rows = NULL;

	for (int i = 0; rel->trigdesc && i < rel->trigdesc->numtriggers; i++)
	{
		Trigger    *trigger = &rel->trigdesc->triggers[i];

		if (!IsAggregateInsertTrigger(trigger))
			continue;
		if (rows == NULL)
		{
			Snapshot	snapshot;
			TableScanDesc scan;
			TupleTableSlot *slot = table_slot_create(staging, NULL);

			CommandCounterIncrement();
			snapshot = RegisterSnapshot(GetLatestSnapshot());
			rows = tuplestore_begin_heap(false, false, work_mem);
			scan = table_beginscan(staging, snapshot, 0, NULL);
			while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
				tuplestore_puttupleslot(rows, slot);
			table_endscan(scan);
			UnregisterSnapshot(snapshot);
			ExecDropSingleTupleTableSlot(slot);
		}
		if (tuplestore_tuple_count(rows) == 0)
			break;
		FoldAsOwner(pg_strtoint64(trigger->tgargs[0]),
					PipelineCatalogOwner("aggregates", pg_strtoint64(trigger->tgargs[0])),
					FOLD_ROWS, target, NULL, rows, RelationGetDescr(staging));
	}
	if (rows)
		tuplestore_end(rows);
	table_close(rel, AccessShareLock);
}

/* Hand a tuplestore's rows to a materialized set-returning function's result */
static void
EmitRows(ReturnSetInfo *rsinfo, Tuplestorestate *rows, TupleDesc desc)
{
	TupleTableSlot *slot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);

	while (tuplestore_gettupleslot(rows, true, false, slot))
	{
		slot_getallattrs(slot);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, slot->tts_values, slot->tts_isnull);
	}
	ExecDropSingleTupleTableSlot(slot);
}

/*
 * pipeline.aggregate_window(id, window_end): a sliding window read from the
 * panes of an aggregate: for each group of its other keys, the states of the
 * panes in (window_end - size, window_end] combined and finished.
 */
Datum
pipeline_aggregate_window(PG_FUNCTION_ARGS)
{
	int64		id = PG_GETARG_INT64(0);
	Datum		window_end = PG_GETARG_DATUM(1);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	AggregateDef *def;
	QueryEnvironment *env;
	List	   *aggrefs;
	StringInfoData sql;
	Oid			argtypes[1] = {TIMESTAMPTZOID};
	Datum		args[1] = {window_end};
	Tuplestorestate *panes,
			   *rows;
	TupleDesc	panes_desc,
				rows_desc;
	PlannedStmt *stmt;
	int			pane = -1;
	int			ngroup = 0;
	int			nestlevel;
	List	   *outer_tuplestores = fold_tuplestores;

	fold_tuplestores = NIL;
	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	def = LoadAggregate(id);
	if (def->window_pane == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("aggregate " INT64_FORMAT " has no sliding window", id),
				 errhint("Create it with the option window, for example '{\"window\": {\"pane\": \"pane\", \"size\": \"5 minutes\"}}'.")));
	nestlevel = NewGUCNestLevel();
	SetSearchPath(def->search_path);
	for (int i = 0; i < def->ncolumns; i++)
	{
		if (def->is_key[i] && strcmp(def->names[i], def->window_pane) == 0)
			pane = i;
	}
	if (pane < 0)
		elog(ERROR, "pane column \"%s\" of aggregate " INT64_FORMAT " is not a key", def->window_pane, id);

	/* the panes of the window, read under the caller's snapshot */
	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT ");
	for (int i = 0; i < def->ncolumns; i++)
		appendStringInfo(&sql, "s.%s, ", quote_identifier(def->names[i]));
	appendStringInfo(&sql, "s.__rows FROM %s s WHERE s.__rows OPERATOR(pg_catalog.>) 0 "
					 "AND s.%s OPERATOR(pg_catalog.>) ($1 OPERATOR(pg_catalog.-) %s::interval) "
					 "AND s.%s OPERATOR(pg_catalog.<=) $1",
					 QualifiedName(def->state), quote_identifier(def->window_pane),
					 quote_literal_cstr(def->window_size), quote_identifier(def->window_pane));
	if (SPI_execute_with_args(sql.data, 1, argtypes, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the panes of aggregate " INT64_FORMAT, id);
	panes = NewTuplestore();
	for (uint64 i = 0; i < SPI_processed; i++)
		PutStateTuple(panes, SPI_tuptable->vals[i], SPI_tuptable->tupdesc);
	panes_desc = CreateTupleDescCopy(SPI_tuptable->tupdesc);

	/* the aggregates, as the partial query parses them */
	resetStringInfo(&sql);
	appendStringInfoString(&sql, PartialQuery(def, QualifiedName(def->source), false));
	(void) PlanGrouping(sql.data, NULL, NIL, AGGSPLIT_INITIAL_SERIAL, &aggrefs);

	/* finish the panes' states per group of the other keys */
	resetStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT ");
	for (int i = 0, first = 1; i < def->ncolumns; i++)
	{
		const char *name = quote_identifier(def->names[i]);

		if (i == pane)
			continue;
		if (def->is_key[i])
			appendStringInfo(&sql, "%s%s", first ? "" : ", ", name);
		else
			appendStringInfo(&sql, "%spg_catalog.count(%s) AS %s", first ? "" : ", ", name, name);
		first = 0;
	}
	appendStringInfoString(&sql, " FROM pipeline_panes");
	for (int i = 0, position = 0; i < def->ncolumns; i++)
	{
		if (i == pane)
			continue;
		position++;
		if (def->is_key[i])
			appendStringInfo(&sql, "%s%d", ngroup++ == 0 ? " GROUP BY " : ", ", position);
	}
	env = create_queryEnv();
	register_ENR(env, MakeEnr("pipeline_panes", panes, InvalidOid, panes_desc));
	stmt = PlanGrouping(sql.data, env, aggrefs, AGGSPLIT_FINAL_DESERIAL, NULL);
	rows = RunPlan(stmt, sql.data, env, &rows_desc);

	/* a window over no panes at all has no groups, as a GROUP BY query */
	if (ngroup > 0 || tuplestore_tuple_count(panes) > 0)
		EmitRows(rsinfo, rows, rows_desc);
	EndTuplestores();
	fold_tuplestores = outer_tuplestores;
	AtEOXact_GUC(true, nestlevel);
	SPI_finish();
	return (Datum) 0;
}

/*
 * pipeline.aggregate_rollup_recompute(id): a rollup's groups computed afresh
 * from all of its base's states, finished, with __rows last; what
 * pipeline.check_aggregate compares a rollup with.
 */
Datum
pipeline_aggregate_rollup_recompute(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	AggregateDef *rollup;
	AggregateDef *base;
	List	   *aggrefs;
	Tuplestorestate *states,
			   *rows;
	TupleDesc	desc;
	int			nestlevel;
	List	   *outer_tuplestores = fold_tuplestores;

	fold_tuplestores = NIL;
	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	rollup = LoadAggregate(PG_GETARG_INT64(0));
	if (rollup->rollup_of == 0)
		elog(ERROR, "aggregate " INT64_FORMAT " is not a rollup", rollup->id);
	nestlevel = NewGUCNestLevel();
	SetSearchPath(rollup->search_path);
	base = LoadAggregate(rollup->rollup_of);
	aggrefs = BaseAggrefs(base);
	states = BaseStates(base, rollup, false, &desc);
	rows = GroupBaseStates(rollup, states, desc, aggrefs, AGGSPLIT_FINAL_DESERIAL, &desc);
	EmitRows(rsinfo, rows, desc);
	EndTuplestores();
	fold_tuplestores = outer_tuplestores;
	AtEOXact_GUC(true, nestlevel);
	SPI_finish();
	return (Datum) 0;
}
