/*-------------------------------------------------------------------------
 *
 * detector.c
 *		Anomaly detection over a windowed table: an online baseline per
 *		series, a score per closed window, one alert per incident.
 *
 * A detector watches a number per window and series of a table — usually
 * a continuous aggregate's output, which the aggregate rewrites as rows
 * arrive.  Statement triggers on the table run in the writer's transaction
 * (a Kafka source's batch, with its offsets), so baselines and alerts
 * commit with the rows that moved them.  A window is closed once the table
 * holds a row whose window starts at least one window length plus the
 * lateness after it; closed windows are scored in order, each series
 * against its own baseline:
 *   - the first warm_up windows only teach the baseline (running mean and
 *     variance); afterwards it is an exponentially weighted mean and
 *     variance (alpha), and a window whose value lies more than threshold
 *     standard deviations (at least min_stddev) above or below the mean
 *     is anomalous, unless both are under min_volume;
 *   - an anomalous window opens an incident (one alert row, NOTIFY) or
 *     extends the open one; the first normal window closes it.  Anomalous
 *     windows do not move the baseline, so an incident cannot teach it;
 *   - a series without a row in a window counts 0 there (missing_as_zero),
 *     so traffic that stops is seen; otherwise such a window is skipped, and
 *     ends the series' open incident;
 *   - with new_series = population, a series seen for the first time starts
 *     from the population's baseline instead of warming up: the median and
 *     the median absolute deviation of all series' values per window, kept
 *     as an exponentially weighted mean and variance.  A new client address
 *     that floods the site is then an incident from its first window;
 *   - with seasonality (hour_of_day or hour_of_week, counted in time_zone),
 *     each series also keeps a baseline per hour of the day or week, taught
 *     like the overall one; a window is scored against its hour's baseline
 *     once that has seen season_warm_up windows, and against the overall
 *     baseline before.  Busy afternoons then do not alert every morning,
 *     and daytime traffic at 3 a.m. does.
 * Rows arriving for a window after it closed do not change its score.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "commands/async.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgtime.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "catalog.h"
#include "detector.h"

PG_FUNCTION_INFO_V1(pipeline_detector_trigger);

/* the most windows one statement scores: a long gap is scored from its end */
#define MAX_WINDOWS 10000

typedef struct Detector
{
	int64		id;
	char	   *name;
	char	   *source;			/* qualified names */
	char	   *alerts;
	char	   *state;
	char	   *time_column;
	char	   *series_json;	/* SQL building the series key as jsonb text */
	char	   *value_column;
	Oid			time_type;
	int64		window;			/* microseconds */
	int64		lateness;
	double		alpha;
	double		threshold;
	bool		spikes;
	bool		drops;
	int			warm_up;
	double		min_volume;
	double		min_stddev;
	bool		missing_as_zero;
	bool		population;		/* new series start from the population's baseline */
	int			season_slots;	/* 0 (no seasonality), 24 or 168 hours */
	int			season_warm_up;
	pg_tz	   *time_zone;		/* where hours are counted; NULL: as stored (timestamp) */
	char	   *notify_channel;
	bool		has_closed_until;
	int64		closed_until;
} Detector;

typedef struct Baseline
{
	char	   *series;			/* jsonb as text */
	int64		windows;
	double		mean;
	double		variance;
	int64		last_window;
	int64		open_alert;		/* 0: none */
	/* with seasonality: per hour of the day or week, as the overall ones */
	int64	   *season_windows;
	double	   *season_mean;
	double	   *season_variance;
	bool		stored;
	bool		changed;
} Baseline;

typedef struct Observation
{
	char	   *series;
	int			window;			/* index from the first window scored */
	double		value;
} Observation;

#define DetectorTable(relid) \
	PipelineQualifiedTable((relid), "detector", \
						   "Drop the detector with pipeline.drop_detector and create it again.")

/* Only pg_pipeline's own triggers, named after the detector, may run it */
static int64
CheckTrigger(FunctionCallInfo fcinfo)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	int64		id;
	char		insert_name[NAMEDATALEN];
	char		update_name[NAMEDATALEN];

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event) ||
		trigdata->tg_trigger->tgnargs != 1 || trigdata->tg_newtable == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("pipeline.detector_trigger() must be fired by pg_pipeline's statement triggers"),
				 errhint("Do not use it directly: pipeline.create_detector creates its triggers.")));
	id = pg_strtoint64(trigdata->tg_trigger->tgargs[0]);
	snprintf(insert_name, sizeof(insert_name), "pipeline_detector_" INT64_FORMAT "_insert", id);
	snprintf(update_name, sizeof(update_name), "pipeline_detector_" INT64_FORMAT "_update", id);
	if (strcmp(trigdata->tg_trigger->tgname, insert_name) != 0 &&
		strcmp(trigdata->tg_trigger->tgname, update_name) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("trigger \"%s\" is not pg_pipeline's", trigdata->tg_trigger->tgname),
				 errhint("Do not use pipeline.detector_trigger() directly: pipeline.create_detector creates its triggers.")));
	return id;
}

static int64
IntervalMicroseconds(Interval *interval)
{
	return interval->time + (int64) interval->day * USECS_PER_DAY;
}

/* The detector's definition, as its owner sees it; it must watch this table */
static Detector *
LoadDetector(int64 id, Oid owner, Oid table)
{
	Oid			argtypes[3] = {INT8OID, OIDOID, OIDOID};
	Datum		args[3] = {Int64GetDatum(id), ObjectIdGetDatum(owner), ObjectIdGetDatum(table)};
	Detector   *d = palloc0(sizeof(Detector));
	HeapTuple	tuple;
	TupleDesc	desc;
	bool		isnull;
	Datum		series;
	StringInfoData json;
	char	   *direction;

	if (SPI_execute_with_args("SELECT name, source::pg_catalog.oid, alerts::pg_catalog.oid, state::pg_catalog.oid, "
							  "time_column, value_column, series_columns, window_length, lateness, alpha, threshold, "
							  "direction, warm_up, min_volume, min_stddev, missing_as_zero, notify_channel, "
							  "closed_until, pipeline.target_column_type(source, time_column)::pg_catalog.oid, "
							  "new_series OPERATOR(pg_catalog.=) 'population', "
							  "CASE seasonality WHEN 'hour_of_day' THEN 24 WHEN 'hour_of_week' THEN 168 ELSE 0 END, "
							  "season_warm_up, time_zone "
							  "FROM pipeline.detectors WHERE id OPERATOR(pg_catalog.=) $1 "
							  "AND owner::pg_catalog.oid OPERATOR(pg_catalog.=) $2 "
							  "AND source::pg_catalog.oid OPERATOR(pg_catalog.=) $3",
							  3, argtypes, args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read pipeline.detectors");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("detector " INT64_FORMAT " does not exist or does not watch this table", id),
				 errhint("Drop the leftover pipeline_detector_* triggers of this table.")));
	tuple = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	d->id = id;
	d->name = SPI_getvalue(tuple, desc, 1);
	d->source = DetectorTable(DatumGetObjectId(SPI_getbinval(tuple, desc, 2, &isnull)));
	d->alerts = DetectorTable(DatumGetObjectId(SPI_getbinval(tuple, desc, 3, &isnull)));
	d->state = DetectorTable(DatumGetObjectId(SPI_getbinval(tuple, desc, 4, &isnull)));
	d->time_column = pstrdup(quote_identifier(SPI_getvalue(tuple, desc, 5)));
	d->value_column = pstrdup(quote_identifier(SPI_getvalue(tuple, desc, 6)));
	series = SPI_getbinval(tuple, desc, 7, &isnull);
	initStringInfo(&json);
	appendStringInfoString(&json, "pg_catalog.jsonb_build_object(");
	{
		ArrayType  *array = DatumGetArrayTypeP(series);
		Datum	   *names;
		int			n;

		deconstruct_array(array, TEXTOID, -1, false, TYPALIGN_INT, &names, NULL, &n);
		for (int i = 0; i < n; i++)
		{
			char	   *column = TextDatumGetCString(names[i]);

			appendStringInfo(&json, "%s%s, src.%s", i > 0 ? ", " : "", quote_literal_cstr(column),
							 quote_identifier(column));
		}
	}
	appendStringInfoString(&json, ")::pg_catalog.text");
	d->series_json = json.data;
	d->window = IntervalMicroseconds(DatumGetIntervalP(SPI_getbinval(tuple, desc, 8, &isnull)));
	d->lateness = IntervalMicroseconds(DatumGetIntervalP(SPI_getbinval(tuple, desc, 9, &isnull)));
	d->alpha = DatumGetFloat8(SPI_getbinval(tuple, desc, 10, &isnull));
	d->threshold = DatumGetFloat8(SPI_getbinval(tuple, desc, 11, &isnull));
	direction = SPI_getvalue(tuple, desc, 12);
	d->spikes = strcmp(direction, "drop") != 0;
	d->drops = strcmp(direction, "spike") != 0;
	d->warm_up = DatumGetInt32(SPI_getbinval(tuple, desc, 13, &isnull));
	d->min_volume = DatumGetFloat8(SPI_getbinval(tuple, desc, 14, &isnull));
	d->min_stddev = DatumGetFloat8(SPI_getbinval(tuple, desc, 15, &isnull));
	d->missing_as_zero = DatumGetBool(SPI_getbinval(tuple, desc, 16, &isnull));
	d->notify_channel = SPI_getvalue(tuple, desc, 17);
	d->closed_until = DatumGetInt64(SPI_getbinval(tuple, desc, 18, &isnull));
	d->has_closed_until = !isnull;
	d->time_type = DatumGetObjectId(SPI_getbinval(tuple, desc, 19, &isnull));
	d->population = DatumGetBool(SPI_getbinval(tuple, desc, 20, &isnull));
	d->season_slots = DatumGetInt32(SPI_getbinval(tuple, desc, 21, &isnull));
	d->season_warm_up = DatumGetInt32(SPI_getbinval(tuple, desc, 22, &isnull));
	if (d->season_slots > 0 && d->time_type == TIMESTAMPTZOID)
	{
		char	   *zone = SPI_getvalue(tuple, desc, 23);

		d->time_zone = pg_tzset(zone);
		if (d->time_zone == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("detector \"%s\" counts hours in unknown time zone \"%s\"", d->name, zone),
					 errhint("Drop the detector and create it again with another time_zone.")));
	}
	if (d->window <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("detector \"%s\" has a window of months", d->name),
				 errhint("Windows are fixed lengths: days, hours, minutes or seconds.")));
	return d;
}

static int
CompareBaselines(const void *a, const void *b)
{
	return strcmp(((const Baseline *) a)->series, ((const Baseline *) b)->series);
}

static int
CompareObservations(const void *a, const void *b)
{
	const Observation *x = a;
	const Observation *y = b;
	int			c = strcmp(x->series, y->series);

	return c != 0 ? c : (x->window > y->window) - (x->window < y->window);
}

static void
EnsureSeasons(Detector *d, Baseline *b)
{
	if (b->season_windows != NULL)
		return;
	b->season_windows = palloc0(sizeof(int64) * d->season_slots);
	b->season_mean = palloc0(sizeof(double) * d->season_slots);
	b->season_variance = palloc0(sizeof(double) * d->season_slots);
}

/* A stored baseline's seasons; those of another seasonality start afresh */
static void
LoadSeasons(Detector *d, Baseline *b, HeapTuple tuple, TupleDesc desc)
{
	Datum	   *columns[3];
	int			n[3];

	if (d->season_slots == 0)
		return;
	EnsureSeasons(d, b);
	for (int c = 0; c < 3; c++)
	{
		bool		isnull;
		Datum		array = SPI_getbinval(tuple, desc, 7 + c, &isnull);

		if (isnull)
			return;
		deconstruct_array(DatumGetArrayTypeP(array), c == 0 ? INT8OID : FLOAT8OID, 8, FLOAT8PASSBYVAL,
						  TYPALIGN_DOUBLE, &columns[c], NULL, &n[c]);
		if (n[c] != d->season_slots)
			return;
	}
	for (int slot = 0; slot < d->season_slots; slot++)
	{
		b->season_windows[slot] = DatumGetInt64(columns[0][slot]);
		b->season_mean[slot] = DatumGetFloat8(columns[1][slot]);
		b->season_variance[slot] = DatumGetFloat8(columns[2][slot]);
	}
}

static Baseline *
LoadBaselines(Detector *d, int *count)
{
	Baseline   *baselines;

	if (SPI_execute(psprintf("SELECT series::pg_catalog.text, windows, mean, variance, last_window, open_alert, "
							 "season_windows, season_mean, season_variance FROM %s",
							 d->state), false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the baselines of detector \"%s\"", d->name);
	*count = (int) SPI_processed;
	baselines = palloc0(sizeof(Baseline) * Max(*count, 1));
	for (int i = 0; i < *count; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		baselines[i].series = SPI_getvalue(tuple, desc, 1);
		baselines[i].windows = DatumGetInt64(SPI_getbinval(tuple, desc, 2, &isnull));
		baselines[i].mean = DatumGetFloat8(SPI_getbinval(tuple, desc, 3, &isnull));
		baselines[i].variance = DatumGetFloat8(SPI_getbinval(tuple, desc, 4, &isnull));
		baselines[i].last_window = DatumGetInt64(SPI_getbinval(tuple, desc, 5, &isnull));
		baselines[i].open_alert = DatumGetInt64(SPI_getbinval(tuple, desc, 6, &isnull));
		if (isnull)
			baselines[i].open_alert = 0;
		LoadSeasons(d, &baselines[i], tuple, desc);
		baselines[i].stored = true;
	}
	qsort(baselines, *count, sizeof(Baseline), CompareBaselines);
	return baselines;
}

/* An anomalous window: open an incident, or extend the open one */
static void
RaiseAlert(Detector *d, Baseline *b, int64 window, double value, double expected, double stddev, double score)
{
	Datum		args[7];

	if (b->open_alert != 0)
	{
		Oid			types[4] = {INT8OID, TIMESTAMPTZOID, FLOAT8OID, FLOAT8OID};

		args[0] = Int64GetDatum(b->open_alert);
		args[1] = TimestampTzGetDatum(window);
		args[2] = Float8GetDatum(value);
		args[3] = Float8GetDatum(score);
		/* the incident keeps its worst window's value and score */
		if (SPI_execute_with_args(psprintf("UPDATE %s SET last_window = $2, windows = windows OPERATOR(pg_catalog.+) 1, "
										   "observed = CASE WHEN pg_catalog.abs($4) OPERATOR(pg_catalog.>) pg_catalog.abs(score) "
										   "THEN $3 ELSE observed END, score = CASE WHEN pg_catalog.abs($4) "
										   "OPERATOR(pg_catalog.>) pg_catalog.abs(score) THEN $4 ELSE score END "
										   "WHERE alert_id OPERATOR(pg_catalog.=) $1", d->alerts),
								  4, types, args, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not write the alerts of detector \"%s\"", d->name);
		return;
	}
	args[0] = CStringGetTextDatum(b->series);
	args[1] = CStringGetTextDatum(score > 0 ? "spike" : "drop");
	args[2] = TimestampTzGetDatum(window);
	args[3] = Float8GetDatum(value);
	args[4] = Float8GetDatum(expected);
	args[5] = Float8GetDatum(stddev);
	args[6] = Float8GetDatum(score);
	{
		Oid			types[7] = {TEXTOID, TEXTOID, TIMESTAMPTZOID, FLOAT8OID, FLOAT8OID, FLOAT8OID, FLOAT8OID};

		if (SPI_execute_with_args(psprintf("INSERT INTO %s (series, direction, started_at, last_window, observed, "
										   "expected, stddev, score) VALUES ($1::pg_catalog.jsonb, $2, $3, $3, $4, $5, $6, $7) "
										   "RETURNING alert_id", d->alerts),
								  7, types, args, NULL, false, 0) != SPI_OK_INSERT_RETURNING)
			elog(ERROR, "could not write the alerts of detector \"%s\"", d->name);
	}
	{
		bool		isnull;

		b->open_alert = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}
	if (d->notify_channel)
	{
		StringInfoData json;

		/* delivered at commit, and only if the statement's transaction commits */
		initStringInfo(&json);
		appendStringInfoString(&json, "{\"detector\": ");
		escape_json(&json, d->name);
		appendStringInfo(&json, ", \"alert_id\": " INT64_FORMAT ", \"series\": %s, \"direction\": \"%s\", "
						 "\"window\": \"%s\", \"observed\": %.6g, \"expected\": %.6g}",
						 b->open_alert, b->series, score > 0 ? "spike" : "drop",
						 timestamptz_to_str(window), value, expected);
		Async_Notify(d->notify_channel, json.data);
	}
}

static void
CloseIncident(Detector *d, Baseline *b, int64 window)
{
	Oid			types[2] = {INT8OID, TIMESTAMPTZOID};
	Datum		args[2] = {Int64GetDatum(b->open_alert), TimestampTzGetDatum(window)};

	if (SPI_execute_with_args(psprintf("UPDATE %s SET ended_at = $2, status = 'closed' "
									   "WHERE alert_id OPERATOR(pg_catalog.=) $1", d->alerts),
							  2, types, args, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not write the alerts of detector \"%s\"", d->name);
	b->open_alert = 0;
}

/* Teach a baseline a normal value: running mean and variance while warming up, EWMA after */
static void
Learn(int64 *windows, double *mean, double *variance, double value, int warm_up, double alpha)
{
	double		delta = value - *mean;

	if (*windows < warm_up)
	{
		/* Welford */
		*mean += delta / (*windows + 1);
		*variance = *windows == 0 ? 0 : (*variance * *windows + delta * (value - *mean)) / (*windows + 1);
	}
	else
	{
		*mean += alpha * delta;
		*variance = (1 - alpha) * (*variance + alpha * delta * delta);
	}
	(*windows)++;
}

/* The hour of the day or week a window starts in, where the detector counts hours */
static int
SeasonSlot(Detector *d, int64 window)
{
	struct pg_tm tm;
	fsec_t		fsec;
	int			offset;

	if (timestamp2tm(window, d->time_zone ? &offset : NULL, &tm, &fsec, NULL, d->time_zone) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("detector \"%s\": a window's time is out of range", d->name)));
	if (d->season_slots == 24)
		return tm.tm_hour;
	/* 0 = Sunday */
	return 24 * j2day(date2j(tm.tm_year, tm.tm_mon, tm.tm_mday)) + tm.tm_hour;
}

/* Score one closed window of a series, then teach the baseline if it was normal */
static void
ScoreWindow(Detector *d, Baseline *b, int64 window, double value)
{
	bool		anomalous = false;
	int			slot = -1;
	bool		warm = b->windows >= d->warm_up;
	double		mean = b->mean;
	double		variance = b->variance;
	double		stddev;
	double		score;

	if (d->season_slots > 0)
	{
		EnsureSeasons(d, b);
		slot = SeasonSlot(d, window);
		if (b->season_windows[slot] >= d->season_warm_up)
		{
			warm = true;
			mean = b->season_mean[slot];
			variance = b->season_variance[slot];
		}
	}
	stddev = Max(sqrt(Max(variance, 0)), d->min_stddev);
	score = (value - mean) / stddev;
	if (warm && Max(value, mean) >= d->min_volume)
		anomalous = (d->spikes && score > d->threshold) || (d->drops && score < -d->threshold);
	if (anomalous)
		RaiseAlert(d, b, window, value, mean, stddev, score);
	else
	{
		if (b->open_alert != 0)
			CloseIncident(d, b, window);
		Learn(&b->windows, &b->mean, &b->variance, value, d->warm_up, d->alpha);
	}
	/*
	 * An hour learns from its normal windows once warm, and from all of them
	 * while warming up: judged by the overall baseline meanwhile, the quiet
	 * hours of a busy series would otherwise look anomalous for ever and
	 * never be learnt.
	 */
	if (slot >= 0 && (!anomalous || b->season_windows[slot] < d->season_warm_up))
		Learn(&b->season_windows[slot], &b->season_mean[slot], &b->season_variance[slot], value,
			  d->season_warm_up, d->alpha);
	b->last_window = window;
	b->changed = true;
}

/* An array's text form ({1,2.5,...}), for a baseline's seasons; NULL without */
static Datum
SeasonText(Detector *d, Baseline *b, int column, bool *isnull)
{
	StringInfoData text;

	*isnull = d->season_slots == 0 || b->season_windows == NULL;
	if (*isnull)
		return (Datum) 0;
	initStringInfo(&text);
	appendStringInfoChar(&text, '{');
	for (int slot = 0; slot < d->season_slots; slot++)
	{
		if (slot > 0)
			appendStringInfoChar(&text, ',');
		if (column == 0)
			appendStringInfo(&text, INT64_FORMAT, b->season_windows[slot]);
		else
			appendStringInfo(&text, "%.17g", column == 1 ? b->season_mean[slot] : b->season_variance[slot]);
	}
	appendStringInfoChar(&text, '}');
	return CStringGetTextDatum(text.data);
}

static void
StoreBaselines(Detector *d, Baseline *baselines, int n)
{
	Datum	   *series = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *windows = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *means = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *variances = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *last = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *alerts = palloc(sizeof(Datum) * Max(n, 1));
	bool	   *alert_nulls = palloc(sizeof(bool) * Max(n, 1));
	Datum	   *seasons[3];
	bool	   *season_nulls[3];
	int			count = 0;
	int			dims[1];
	int			lbs[1] = {1};
	Oid			types[9] = {TEXTARRAYOID, INT8ARRAYOID, FLOAT8ARRAYOID, FLOAT8ARRAYOID, TIMESTAMPTZARRAYOID, INT8ARRAYOID,
		TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID};
	Datum		args[9];

	for (int c = 0; c < 3; c++)
	{
		seasons[c] = palloc(sizeof(Datum) * Max(n, 1));
		season_nulls[c] = palloc(sizeof(bool) * Max(n, 1));
	}

	for (int i = 0; i < n; i++)
	{
		if (!baselines[i].changed)
			continue;
		series[count] = CStringGetTextDatum(baselines[i].series);
		windows[count] = Int64GetDatum(baselines[i].windows);
		means[count] = Float8GetDatum(baselines[i].mean);
		variances[count] = Float8GetDatum(baselines[i].variance);
		last[count] = TimestampTzGetDatum(baselines[i].last_window);
		alerts[count] = Int64GetDatum(baselines[i].open_alert);
		alert_nulls[count] = baselines[i].open_alert == 0;
		for (int c = 0; c < 3; c++)
			seasons[c][count] = SeasonText(d, &baselines[i], c, &season_nulls[c][count]);
		count++;
	}
	if (count == 0)
		return;
	dims[0] = count;
	args[0] = PointerGetDatum(construct_array(series, count, TEXTOID, -1, false, TYPALIGN_INT));
	args[1] = PointerGetDatum(construct_array(windows, count, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[2] = PointerGetDatum(construct_array(means, count, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[3] = PointerGetDatum(construct_array(variances, count, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[4] = PointerGetDatum(construct_array(last, count, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[5] = PointerGetDatum(construct_md_array(alerts, alert_nulls, 1, dims, lbs, INT8OID, 8, FLOAT8PASSBYVAL,
												 TYPALIGN_DOUBLE));
	for (int c = 0; c < 3; c++)
		args[6 + c] = PointerGetDatum(construct_md_array(seasons[c], season_nulls[c], 1, dims, lbs, TEXTOID, -1, false,
														 TYPALIGN_INT));
	if (SPI_execute_with_args(psprintf("INSERT INTO %s (series, windows, mean, variance, last_window, open_alert, "
									   "season_windows, season_mean, season_variance) "
									   "SELECT s::pg_catalog.jsonb, w, m, v, l, a, sw::pg_catalog.int8[], "
									   "sm::pg_catalog.float8[], sv::pg_catalog.float8[] FROM ROWS FROM (pg_catalog.unnest($1), "
									   "pg_catalog.unnest($2), pg_catalog.unnest($3), pg_catalog.unnest($4), "
									   "pg_catalog.unnest($5), pg_catalog.unnest($6), pg_catalog.unnest($7), "
									   "pg_catalog.unnest($8), pg_catalog.unnest($9)) u(s, w, m, v, l, a, sw, sm, sv) "
									   "ON CONFLICT (series) DO UPDATE SET windows = EXCLUDED.windows, mean = EXCLUDED.mean, "
									   "variance = EXCLUDED.variance, last_window = EXCLUDED.last_window, "
									   "open_alert = EXCLUDED.open_alert, season_windows = EXCLUDED.season_windows, "
									   "season_mean = EXCLUDED.season_mean, season_variance = EXCLUDED.season_variance",
									   d->state),
							  9, types, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not write the baselines of detector \"%s\"", d->name);
}

/* the population's baseline is stored as the series JSON null */
#define POPULATION_SERIES "null"

static int
CompareDoubles(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return (x > y) - (x < y);
}

static double
Median(double *values, int n)
{
	qsort(values, n, sizeof(double), CompareDoubles);
	return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

/*
 * Teach the population's baseline the windows' median and spread
 * (1.4826 x the median absolute deviation: the standard deviation of a
 * normal distribution), robust to the few series that stray.
 */
static void
LearnPopulation(Detector *d, Baseline *population, Observation *observations, int n, int nwindows)
{
	double	  **values = palloc0(sizeof(double *) * nwindows);
	int		   *counts = palloc0(sizeof(int) * nwindows);

	for (int i = 0; i < n; i++)
		counts[observations[i].window]++;
	for (int w = 0; w < nwindows; w++)
		values[w] = palloc(sizeof(double) * Max(counts[w], 1));
	memset(counts, 0, sizeof(int) * nwindows);
	for (int i = 0; i < n; i++)
		values[observations[i].window][counts[observations[i].window]++] = observations[i].value;
	for (int w = 0; w < nwindows; w++)
	{
		double		median,
					spread,
					delta;

		if (counts[w] == 0)
			continue;
		median = Median(values[w], counts[w]);
		for (int k = 0; k < counts[w]; k++)
			values[w][k] = fabs(values[w][k] - median);
		spread = 1.4826 * Median(values[w], counts[w]);
		delta = median - population->mean;
		if (population->windows < d->warm_up)
		{
			population->mean += delta / (population->windows + 1);
			population->variance += (spread * spread - population->variance) / (population->windows + 1);
		}
		else
		{
			population->mean += d->alpha * delta;
			population->variance += d->alpha * (spread * spread - population->variance);
		}
		population->windows++;
		population->changed = true;
	}
}

/*
 * Score the windows in [from, from + nwindows * window) of every series:
 * those with rows, and those the baselines know (a missing row counts 0).
 */
static void
ScoreClosedWindows(Detector *d, int64 from, int nwindows)
{
	Oid			argtypes[2] = {d->time_type, d->time_type};
	Datum		args[2] = {Int64GetDatum(from), Int64GetDatum(from + (int64) nwindows * d->window)};
	Observation *observations;
	int			nobservations;
	Baseline   *baselines;
	int			nbaselines;
	Baseline   *added;
	int			nadded = 0;
	double	   *values = palloc(sizeof(double) * nwindows);
	bool	   *present = palloc(sizeof(bool) * nwindows);
	int			o = 0,
				b = 0;
	Baseline   *population = NULL;

	if (SPI_execute_with_args(psprintf("SELECT %s, %s, (%s)::pg_catalog.float8 FROM %s src "
									   "WHERE %s OPERATOR(pg_catalog.>=) $1 AND %s OPERATOR(pg_catalog.<) $2 "
									   "AND %s IS NOT NULL",
									   d->series_json, d->time_column, d->value_column, d->source,
									   d->time_column, d->time_column, d->value_column),
							  2, argtypes, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the table of detector \"%s\"", d->name);
	nobservations = (int) SPI_processed;
	observations = palloc(sizeof(Observation) * Max(nobservations, 1));
	for (int i = 0; i < nobservations; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		bool		isnull;
		int64		t = DatumGetInt64(SPI_getbinval(tuple, SPI_tuptable->tupdesc, 2, &isnull));

		observations[i].series = SPI_getvalue(tuple, SPI_tuptable->tupdesc, 1);
		observations[i].window = (int) ((t - from) / d->window);
		observations[i].value = DatumGetFloat8(SPI_getbinval(tuple, SPI_tuptable->tupdesc, 3, &isnull));
	}
	qsort(observations, nobservations, sizeof(Observation), CompareObservations);
	baselines = LoadBaselines(d, &nbaselines);
	added = palloc0(sizeof(Baseline) * Max(nobservations + 1, 1));
	if (d->population)
	{
		for (int i = 0; i < nbaselines; i++)
			if (strcmp(baselines[i].series, POPULATION_SERIES) == 0)
				population = &baselines[i];
		if (population == NULL)
		{
			population = &added[nadded++];
			population->series = POPULATION_SERIES;
		}
		LearnPopulation(d, population, observations, nobservations, nwindows);
	}

	/* series in order: the baselines' and the observations', merged */
	while (o < nobservations || b < nbaselines)
	{
		int			c = o >= nobservations ? 1 : b >= nbaselines ? -1 :
			strcmp(observations[o].series, baselines[b].series);
		Baseline   *baseline;
		int			first = 0;

		if (c < 0)
		{
			/* a new series: its baseline starts at its first window */
			baseline = &added[nadded++];
			baseline->series = observations[o].series;
			first = observations[o].window;
			if (population && population->windows >= d->warm_up)
			{
				baseline->mean = population->mean;
				baseline->variance = population->variance;
				baseline->windows = d->warm_up;
			}
		}
		else
			baseline = &baselines[b++];
		if (baseline == population)
			continue;			/* not a series */
		memset(present, 0, sizeof(bool) * nwindows);
		if (c <= 0)
		{
			const char *series = observations[o].series;

			for (; o < nobservations && strcmp(observations[o].series, series) == 0; o++)
			{
				/* two rows in one window (a finer table): their values add up */
				int			w = observations[o].window;

				values[w] = present[w] ? values[w] + observations[o].value : observations[o].value;
				present[w] = true;
			}
		}
		for (int w = first; w < nwindows; w++)
		{
			int64		start = from + (int64) w * d->window;

			CHECK_FOR_INTERRUPTS();
			if (baseline->stored && start <= baseline->last_window)
				continue;		/* scored already */
			if (present[w])
				ScoreWindow(d, baseline, start, values[w]);
			else if (d->missing_as_zero)
				ScoreWindow(d, baseline, start, 0);
			else if (baseline->open_alert != 0)
			{
				/* a series that went quiet: its incident is over */
				CloseIncident(d, baseline, start);
				baseline->changed = true;
			}
		}
	}
	StoreBaselines(d, baselines, nbaselines);
	StoreBaselines(d, added, nadded);
}

/*
 * Trigger: AFTER INSERT or AFTER UPDATE FOR EACH STATEMENT REFERENCING NEW
 * TABLE AS pipeline_new on a detector's table, argument the detector's id.
 */
Datum
pipeline_detector_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	int64		id = CheckTrigger(fcinfo);
	Oid			owner = PipelineCatalogOwner("detectors", id);
	Oid			save_userid;
	int			save_sec_context;
	int			nestlevel;
	Detector   *d;
	bool		isnull;
	int64		newest,
				oldest,
				horizon,
				from;
	int64		nwindows;

	if (!OidIsValid(owner))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("detector " INT64_FORMAT " does not exist", id),
				 errhint("Drop the leftover pipeline_detector_* triggers of this table.")));
	nestlevel = PipelineEnterOwner(owner, &save_userid, &save_sec_context);
	/* timestamps and timestamptz alike are microseconds since 2000 UTC here */
	(void) set_config_option("TimeZone", "UTC", PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	SPI_connect();
	if (SPI_register_trigger_data(trigdata) != SPI_OK_TD_REGISTER)
		elog(ERROR, "could not register the transition table of detector " INT64_FORMAT, id);
	{
		Oid			types[1] = {INT8OID};
		Datum		args[1] = {Int64GetDatum(id)};

		/* one statement at a time scores a detector's windows */
		if (SPI_execute_with_args("SELECT pg_catalog.pg_advisory_xact_lock(1886546036, $1::pg_catalog.int4)",
								  1, types, args, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not lock detector " INT64_FORMAT, id);
	}
	d = LoadDetector(id, owner, RelationGetRelid(trigdata->tg_relation));

	if (SPI_execute(psprintf("SELECT max(%s), min(%s) FROM pipeline_new", d->time_column, d->time_column),
					true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the new rows of detector \"%s\"", d->name);
	newest = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	oldest = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	if (!isnull && !TIMESTAMP_NOT_FINITE(newest) && !TIMESTAMP_NOT_FINITE(oldest))
	{
		/* windows that end at or before the horizon are closed */
		horizon = newest - d->lateness;
		from = d->has_closed_until ? d->closed_until : oldest;
		nwindows = horizon > from ? (horizon - from) / d->window : 0;
		if (nwindows > MAX_WINDOWS)
		{
			from += (nwindows - MAX_WINDOWS) * d->window;
			nwindows = MAX_WINDOWS;
		}
		if (nwindows > 0)
			ScoreClosedWindows(d, from, (int) nwindows);
		/* the first rows also fix where the windows start */
		if (nwindows > 0 || !d->has_closed_until)
		{
			Oid			types[2] = {INT8OID, TIMESTAMPTZOID};
			Datum		args[2];

			args[0] = Int64GetDatum(id);
			args[1] = TimestampTzGetDatum(from + nwindows * d->window);
			if (SPI_execute_with_args("UPDATE pipeline.detectors SET closed_until = $2 WHERE id OPERATOR(pg_catalog.=) $1",
									  2, types, args, NULL, false, 0) != SPI_OK_UPDATE)
				elog(ERROR, "could not write pipeline.detectors");
		}
	}
	SPI_finish();
	PipelineLeaveOwner(nestlevel, save_userid, save_sec_context);
	return PointerGetDatum(NULL);
}
