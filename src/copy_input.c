/*-------------------------------------------------------------------------
 *
 * copy_input.c
 *		Faster type input for the COPY that stores stream rows.
 *
 * Stream messages carry their times as ISO 8601 text and their amounts as
 * plain decimals.  PostgreSQL's input functions accept every date style and
 * number form, and their general parsers took about a sixth of an ingest
 * worker's time.  Here the usual forms are converted directly; any other
 * text goes to PostgreSQL's own input function, so the result, and every
 * error, is what COPY would give.
 *
 * The input functions are swapped in the COPY's state after BeginCopyFrom,
 * which has no hook for it: CopyFromStateData is in an installed header.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/copyfrom_internal.h"
#include "datatype/timestamp.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/fmgroids.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "copy_input.h"

static inline bool
ReadDigits(const char **p, int count, int *value)
{
	int			v = 0;

	for (int i = 0; i < count; i++)
	{
		char		c = (*p)[i];

		if (c < '0' || c > '9')
			return false;
		v = v * 10 + (c - '0');
	}
	*p += count;
	*value = v;
	return true;
}

/*
 * Parse "YYYY-MM-DD[T| ]HH:MM:SS[.f{1,6}]" then, if with_zone, one of "Z",
 * "+HH", "+HH:MM", "+HHMM" (or "-"), else nothing.  Gives the time as if
 * in UTC and the zone's offset east of UTC in seconds.  False for anything
 * else, including values PostgreSQL would adjust (24:00, leap seconds,
 * rounded fractions), so that its own parser decides them.
 */
static bool
ParseIsoTimestamp(const char *s, bool with_zone, Timestamp *utc_time, int *offset)
{
	const char *p = s;
	int			year,
				month,
				day,
				hour,
				minute,
				second;
	int64		usec = 0;

	if (!ReadDigits(&p, 4, &year) || *p++ != '-' ||
		!ReadDigits(&p, 2, &month) || *p++ != '-' ||
		!ReadDigits(&p, 2, &day) || (*p != 'T' && *p != ' '))
		return false;
	p++;
	if (!ReadDigits(&p, 2, &hour) || *p++ != ':' ||
		!ReadDigits(&p, 2, &minute) || *p++ != ':' ||
		!ReadDigits(&p, 2, &second))
		return false;
	if (year < 1 || month < 1 || month > MONTHS_PER_YEAR ||
		day < 1 || day > day_tab[isleap(year)][month - 1] ||
		hour >= HOURS_PER_DAY || minute >= MINS_PER_HOUR || second >= SECS_PER_MINUTE)
		return false;
	if (*p == '.')
	{
		int			digits = 0;
		int64		scale = USECS_PER_SEC;

		for (p++; *p >= '0' && *p <= '9'; p++)
		{
			if (++digits > 6)
				return false;
			scale /= 10;
			usec += (*p - '0') * scale;
		}
		if (digits == 0)
			return false;
	}

	*offset = 0;
	if (with_zone)
	{
		int			zone_hour,
					zone_minute = 0;
		int			sign;

		if (*p == 'Z' && p[1] == '\0')
			p++;
		else if (*p == '+' || *p == '-')
		{
			sign = (*p++ == '+') ? 1 : -1;
			if (!ReadDigits(&p, 2, &zone_hour))
				return false;
			if (*p == ':')
			{
				p++;
				if (!ReadDigits(&p, 2, &zone_minute))
					return false;
			}
			else if (*p != '\0' && !ReadDigits(&p, 2, &zone_minute))
				return false;
			if (zone_hour >= MAX_TZDISP_HOUR || zone_minute >= MINS_PER_HOUR)
				return false;
			*offset = sign * (zone_hour * SECS_PER_HOUR + zone_minute * SECS_PER_MINUTE);
		}
		else
			return false;
	}
	if (*p != '\0')
		return false;

	*utc_time = (int64) (date2j(year, month, day) - POSTGRES_EPOCH_JDATE) * USECS_PER_DAY +
		((int64) ((hour * MINS_PER_HOUR + minute) * SECS_PER_MINUTE + second)) * USECS_PER_SEC +
		usec;
	return true;
}

/* Called only through the COPY state's FmgrInfo: not SQL functions */
static Datum
FastTimestamptzIn(PG_FUNCTION_ARGS)
{
	char	   *text = PG_GETARG_CSTRING(0);
	int32		typmod = PG_GETARG_INT32(2);
	Timestamp	local;
	int			offset;

	if (typmod == -1 && ParseIsoTimestamp(text, true, &local, &offset))
	{
		TimestampTz result = local - (int64) offset * USECS_PER_SEC;

		if (IS_VALID_TIMESTAMP(result))
			PG_RETURN_TIMESTAMPTZ(result);
	}
	return DirectFunctionCall3(timestamptz_in, PG_GETARG_DATUM(0), PG_GETARG_DATUM(1),
							   PG_GETARG_DATUM(2));
}

static Datum
FastTimestampIn(PG_FUNCTION_ARGS)
{
	char	   *text = PG_GETARG_CSTRING(0);
	int32		typmod = PG_GETARG_INT32(2);
	Timestamp	result;
	int			offset;

	if (typmod == -1 && ParseIsoTimestamp(text, false, &result, &offset) &&
		IS_VALID_TIMESTAMP(result))
		PG_RETURN_TIMESTAMP(result);
	return DirectFunctionCall3(timestamp_in, PG_GETARG_DATUM(0), PG_GETARG_DATUM(1),
							   PG_GETARG_DATUM(2));
}

/*
 * "[-]digits[.digits]" with at most 18 digits: the number in units of
 * 10^-scale.  Anything else (exponents, spaces, NaN, long numbers) is left
 * to numeric_in.
 */
static bool
ParsePlainDecimal(const char *s, int64 *units, int *scale)
{
	const char *p = s;
	bool		negative = (*p == '-');
	int64		value = 0;
	int			digits = 0;
	int			fraction = -1;

	if (negative)
		p++;
	for (;; p++)
	{
		if (*p >= '0' && *p <= '9')
		{
			if (++digits > 18)
				return false;
			value = value * 10 + (*p - '0');
			if (fraction >= 0)
				fraction++;
		}
		else if (*p == '.' && fraction < 0 && digits > 0)
			fraction = 0;
		else
			break;
	}
	if (*p != '\0' || digits == 0 || fraction == 0)
		return false;
	*units = negative ? -value : value;
	*scale = Max(fraction, 0);
	return true;
}

static Datum
FastNumericIn(PG_FUNCTION_ARGS)
{
	int32		typmod = PG_GETARG_INT32(2);
	int64		units;
	int			scale;

	if (ParsePlainDecimal(PG_GETARG_CSTRING(0), &units, &scale))
	{
		Numeric		value = int64_div_fast_to_numeric(units, scale);

		/* numeric() rounds and checks precision as numeric_in does */
		if (typmod >= 0)
			return DirectFunctionCall2(numeric, NumericGetDatum(value), Int32GetDatum(typmod));
		PG_RETURN_NUMERIC(value);
	}
	return DirectFunctionCall3(numeric_in, PG_GETARG_DATUM(0), PG_GETARG_DATUM(1),
							   PG_GETARG_DATUM(2));
}

/* Swap the fast input functions into a text or CSV COPY FROM */
void
PipelineUseFastInput(CopyFromState cstate)
{
	int			natts = RelationGetDescr(cstate->rel)->natts;

	if (cstate->opts.binary)
		return;
	for (int i = 0; i < natts; i++)
	{
		FmgrInfo   *input = &cstate->in_functions[i];

		if (input->fn_oid == F_TIMESTAMPTZ_IN)
			input->fn_addr = FastTimestamptzIn;
		else if (input->fn_oid == F_TIMESTAMP_IN)
			input->fn_addr = FastTimestampIn;
		else if (input->fn_oid == F_NUMERIC_IN)
			input->fn_addr = FastNumericIn;
	}
}
