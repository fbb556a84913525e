/*-------------------------------------------------------------------------
 *
 * schedule.c
 *		Job schedules and their fire times.
 *
 * Forms:
 *   cron with 5 fields (minute hour day-of-month month day-of-week) or 6
 *   (a leading seconds field): *, values, ranges a-b, steps * /n and a-b/n,
 *   comma lists, month names JAN-DEC and day names SUN-SAT (0 and 7 are
 *   Sunday).  When both day fields are restricted a day matches either, as
 *   in Vixie cron.  Macros @yearly, @monthly, @weekly, @daily, @hourly.
 *   @every <interval>: a fixed period, fired at its multiples since the
 *   Unix epoch (so @every 10 seconds fires at :00, :10, ...).
 *   @once <timestamp>: one fire.
 *
 * Time zones.  Cron fields are local times of the job's time zone.  A local
 * time skipped by a DST change (02:30 on the spring-forward day) fires at
 * the instant it names with the offset before the change, which is the
 * same time of day after it (03:30); a local time that occurs twice (on the
 * fall-back day) fires once.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"

#include "schedule.h"

PG_FUNCTION_INFO_V1(pipeline_next_runs);

#define UNIX_EPOCH_IN_PG_USECS \
	((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * USECS_PER_SEC)

/* cron searches stop after this many years: "0 0 30 2 *" never fires */
#define CRON_SEARCH_YEARS 8

typedef struct CronField
{
	const char *name;
	int			min;
	int			max;
	const char *const *names;	/* value names, index = value - min, or NULL */
} CronField;

static const char *const month_names[] = {
	"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"
};
static const char *const day_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

static const CronField cron_fields[] = {
	{"second", 0, 59, NULL},
	{"minute", 0, 59, NULL},
	{"hour", 0, 23, NULL},
	{"day of month", 1, 31, NULL},
	{"month", 1, 12, month_names},
	{"day of week", 0, 7, day_names},
};

/* A value of a field: a number or, where the field has them, a name */
static bool
ParseValue(const CronField *field, const char **p, int *value)
{
	const char *s = *p;

	if (isdigit((unsigned char) *s))
	{
		int			v = 0;

		while (isdigit((unsigned char) *s) && v <= 1000)
			v = v * 10 + (*s++ - '0');
		*value = v;
		*p = s;
		return v >= field->min && v <= field->max;
	}
	if (field->names && isalpha((unsigned char) s[0]) && isalpha((unsigned char) s[1]) &&
		isalpha((unsigned char) s[2]))
	{
		int			count = field->max - field->min + 1 - (field->names == day_names ? 1 : 0);

		for (int i = 0; i < count; i++)
		{
			if (pg_strncasecmp(s, field->names[i], 3) == 0)
			{
				*value = field->min + i;
				*p = s + 3;
				return true;
			}
		}
	}
	return false;
}

/*
 * One field (a comma list of *, a, a-b, each with an optional /step) into
 * a bit set; false on a syntax or range error.
 */
static bool
ParseField(const CronField *field, const char *text, uint64 *bits, bool *restricted)
{
	const char *p = text;

	*bits = 0;
	*restricted = strcmp(text, "*") != 0 && strcmp(text, "?") != 0;
	for (;;)
	{
		int			low,
					high,
					step = 1;

		if (*p == '*' || *p == '?')
		{
			low = field->min;
			high = field->max;
			p++;
		}
		else
		{
			if (!ParseValue(field, &p, &low))
				return false;
			high = low;
			if (*p == '-')
			{
				p++;
				if (!ParseValue(field, &p, &high) || high < low)
					return false;
			}
		}
		if (*p == '/')
		{
			p++;
			if (!isdigit((unsigned char) *p))
				return false;
			step = 0;
			while (isdigit((unsigned char) *p) && step <= 1000)
				step = step * 10 + (*p++ - '0');
			if (step < 1 || step > field->max)
				return false;
			/* "a/n" means from a to the end of the field */
			if (high == low && p[-1] != '*')
				high = field->max;
		}
		for (int v = low; v <= high; v += step)
			*bits |= UINT64CONST(1) << v;
		if (*p == '\0')
			return true;
		if (*p++ != ',')
			return false;
	}
}

static bool
ParseCron(const char *text, Schedule *schedule, char **error, char **hint)
{
	char	   *copy = pstrdup(text);
	char	   *fields[6];
	int			nfields = 0;
	int			first;
	char	   *token;
	char	   *save;

	for (token = strtok_r(copy, " \t", &save); token; token = strtok_r(NULL, " \t", &save))
	{
		if (nfields == 6)
		{
			nfields++;
			break;
		}
		fields[nfields++] = token;
	}
	if (nfields != 5 && nfields != 6)
	{
		*error = psprintf("schedule \"%s\" has %d fields", text, nfields);
		*hint = pstrdup("A cron schedule has 5 fields (minute hour day-of-month month day-of-week), or 6 with a leading seconds field; or use @every 10 seconds, @once <timestamp>, @daily.");
		return false;
	}

	/* five fields: no seconds field, fire at second 0 */
	first = nfields == 5 ? 1 : 0;
	schedule->kind = SCHEDULE_CRON;
	schedule->seconds = UINT64CONST(1);
	for (int i = 0; i < nfields; i++)
	{
		const CronField *field = &cron_fields[first + i];
		uint64		bits;
		bool		restricted;

		if (!ParseField(field, fields[i], &bits, &restricted))
		{
			*error = psprintf("invalid %s field \"%s\" in schedule \"%s\"", field->name, fields[i], text);
			*hint = psprintf("Use *, a value from %d to %d%s, a range a-b, a step */n or a-b/n, or a comma list of those.",
							 field->min, field->max,
							 field->names == month_names ? " or JAN-DEC" :
							 field->names == day_names ? " (0 and 7 are Sunday) or SUN-SAT" : "");
			return false;
		}
		switch (first + i)
		{
			case 0:
				schedule->seconds = bits;
				break;
			case 1:
				schedule->minutes = bits;
				break;
			case 2:
				schedule->hours = (uint32) bits;
				break;
			case 3:
				schedule->days = (uint32) bits;
				schedule->days_restricted = restricted;
				break;
			case 4:
				schedule->months = (uint32) bits;
				break;
			case 5:
				/* 7 is Sunday too */
				schedule->weekdays = (uint32) ((bits | (bits >> 7)) & 0x7F);
				schedule->weekdays_restricted = restricted;
				break;
		}
	}
	return true;
}

bool
PipelineParseSchedule(const char *text, Schedule *schedule, char **error, char **hint)
{
	static const struct
	{
		const char *name;
		const char *cron;
	}			macros[] = {
		{"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
		{"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"}, {"@midnight", "0 0 * * *"},
		{"@hourly", "0 * * * *"},
	};
	const char *p;

	memset(schedule, 0, sizeof(Schedule));
	while (isspace((unsigned char) *text))
		text++;
	if (text[0] != '@')
		return ParseCron(text, schedule, error, hint);

	for (int i = 0; i < lengthof(macros); i++)
	{
		if (pg_strcasecmp(text, macros[i].name) == 0)
			return ParseCron(macros[i].cron, schedule, error, hint);
	}
	if (pg_strncasecmp(text, "@every", 6) == 0 && isspace((unsigned char) text[6]))
	{
		Interval   *period;

		p = text + 7;
		period = DatumGetIntervalP(DirectFunctionCall3(interval_in, CStringGetDatum(p),
													   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
		if (period->month != 0)
		{
			*error = psprintf("period \"%s\" of schedule \"%s\" has months", p, text);
			*hint = pstrdup("@every takes a fixed period, such as 10 seconds or 2 days; use a cron schedule for calendar months.");
			return false;
		}
		schedule->kind = SCHEDULE_EVERY;
		schedule->period_usecs = period->time + (int64) period->day * USECS_PER_DAY;
		if (schedule->period_usecs < USECS_PER_SEC)
		{
			*error = psprintf("period \"%s\" of schedule \"%s\" is shorter than a second", p, text);
			*hint = pstrdup("Schedules fire at most once a second.");
			return false;
		}
		return true;
	}
	if (pg_strncasecmp(text, "@once", 5) == 0 && isspace((unsigned char) text[5]))
	{
		p = text + 6;
		schedule->kind = SCHEDULE_ONCE;
		schedule->once_at = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in, CStringGetDatum(p),
																	 ObjectIdGetDatum(InvalidOid),
																	 Int32GetDatum(-1)));
		return true;
	}
	*error = psprintf("unknown schedule \"%s\"", text);
	*hint = pstrdup("Use a cron schedule such as '*/5 * * * *' (or with seconds, '*/10 * * * * *'), @every 10 seconds, @once 2026-12-01 03:00, or @yearly, @monthly, @weekly, @daily, @hourly.");
	return false;
}

static int
DaysInMonth(int year, int month)
{
	return day_tab[isleap(year)][month - 1];
}

static bool
DayMatches(const Schedule *s, struct pg_tm *tm)
{
	bool		day = (s->days >> tm->tm_mday) & 1;
	bool		weekday = (s->weekdays >> j2day(date2j(tm->tm_year, tm->tm_mon, tm->tm_mday))) & 1;

	/* Vixie cron: with both fields restricted, either one matches */
	if (s->days_restricted && s->weekdays_restricted)
		return day || weekday;
	return day && weekday;
}

/* Carry overflowing fields upwards: seconds to minutes ... months to years */
static void
Carry(struct pg_tm *tm)
{
	if (tm->tm_sec > 59)
	{
		tm->tm_sec = 0;
		tm->tm_min++;
	}
	if (tm->tm_min > 59)
	{
		tm->tm_min = 0;
		tm->tm_hour++;
	}
	if (tm->tm_hour > 23)
	{
		tm->tm_hour = 0;
		tm->tm_mday++;
	}
	if (tm->tm_mday > DaysInMonth(tm->tm_year, tm->tm_mon))
	{
		tm->tm_mday = 1;
		tm->tm_mon++;
	}
	if (tm->tm_mon > 12)
	{
		tm->tm_mon = 1;
		tm->tm_year++;
	}
}

static bool
NextCronFire(const Schedule *s, TimestampTz after, pg_tz *tz, TimestampTz *next)
{
	struct pg_tm tm;
	fsec_t		fsec;
	int			offset;
	int			last_year;
	TimestampTz start = after - after % USECS_PER_SEC + USECS_PER_SEC;

	/* whole seconds: the first candidate is the next whole second */
	if (after < 0 && after % USECS_PER_SEC != 0)
		start -= USECS_PER_SEC;
	if (timestamp2tm(start, &offset, &tm, &fsec, NULL, tz) != 0)
		return false;
	last_year = tm.tm_year + CRON_SEARCH_YEARS;

	while (tm.tm_year <= last_year)
	{
		TimestampTz candidate;

		CHECK_FOR_INTERRUPTS();
		if (!((s->months >> tm.tm_mon) & 1))
		{
			tm.tm_mon++;
			tm.tm_mday = 1;
			tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
		}
		else if (!DayMatches(s, &tm))
		{
			tm.tm_mday++;
			tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
		}
		else if (!((s->hours >> tm.tm_hour) & 1))
		{
			tm.tm_hour++;
			tm.tm_min = tm.tm_sec = 0;
		}
		else if (!((s->minutes >> tm.tm_min) & 1))
		{
			tm.tm_min++;
			tm.tm_sec = 0;
		}
		else if (!((s->seconds >> tm.tm_sec) & 1))
			tm.tm_sec++;
		else
		{
			/* a local time: the offset the zone gives it, gap and overlap included */
			tm.tm_isdst = -1;
			offset = DetermineTimeZoneOffset(&tm, tz);
			if (tm2timestamp(&tm, 0, &offset, &candidate) != 0)
				return false;
			/* the second occurrence of a repeated local time maps before "after" */
			if (candidate > after)
			{
				*next = candidate;
				return true;
			}
			tm.tm_sec++;
		}
		Carry(&tm);
	}
	return false;
}

bool
PipelineNextFire(const Schedule *schedule, TimestampTz after, pg_tz *tz, TimestampTz *next)
{
	switch (schedule->kind)
	{
		case SCHEDULE_CRON:
			return NextCronFire(schedule, after, tz, next);
		case SCHEDULE_EVERY:
			{
				/* the next multiple of the period since the Unix epoch */
				int64		since = after - UNIX_EPOCH_IN_PG_USECS;
				int64		k = since >= 0 ? since / schedule->period_usecs + 1 :
					-((-since) / schedule->period_usecs) + ((-since) % schedule->period_usecs == 0 ? 1 : 0);

				*next = UNIX_EPOCH_IN_PG_USECS + k * schedule->period_usecs;
				return true;
			}
		case SCHEDULE_ONCE:
			*next = schedule->once_at;
			return schedule->once_at > after;
	}
	return false;
}

/* The time zone of a schedule, or an error naming it */
static pg_tz *
ScheduleTimeZone(const char *name)
{
	pg_tz	   *tz = pg_tzset(name);

	if (tz == NULL || !pg_tz_acceptable(tz))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown time zone \"%s\"", name),
				 errhint("Use an IANA time zone name such as 'UTC' or 'Europe/Paris'; SELECT name FROM pg_timezone_names lists them.")));
	return tz;
}

/*
 * pipeline.next_runs(schedule, count, after, time_zone): the next fire
 * times of a schedule; checks it and previews it.
 */
Datum
pipeline_next_runs(PG_FUNCTION_ARGS)
{
	char	   *spec = text_to_cstring(PG_GETARG_TEXT_PP(0));
	int32		count = PG_GETARG_INT32(1);
	TimestampTz after = PG_GETARG_TIMESTAMPTZ(2);
	pg_tz	   *tz = ScheduleTimeZone(text_to_cstring(PG_GETARG_TEXT_PP(3)));
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Schedule	schedule;
	char	   *error;
	char	   *hint;

	if (count < 0 || count > 10000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("count %d is out of range", count),
				 errhint("Ask for 0 to 10000 fire times.")));
	if (!PipelineParseSchedule(spec, &schedule, &error, &hint))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s", error),
				 errhint("%s", hint)));
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	for (int i = 0; i < count; i++)
	{
		TimestampTz next;
		Datum		value;
		bool		isnull = false;

		if (!PipelineNextFire(&schedule, after, tz, &next))
			break;
		value = TimestampTzGetDatum(next);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &value, &isnull);
		after = next;
	}
	return (Datum) 0;
}
