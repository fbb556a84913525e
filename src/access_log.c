/*-------------------------------------------------------------------------
 *
 * access_log.c
 *		Web server access log lines (Common and Combined Log Format).
 *
 * A line is what Apache's and nginx's default formats write:
 *
 *   client ident auth_user [10/Oct/2000:13:55:36 -0700] "GET /a HTTP/1.1" 200 2326
 *
 * optionally followed (Combined Log Format) by the quoted referer and user
 * agent, and by anything else a site appends (nginx's request time, say),
 * kept as the field extra.  "-" stands for an absent field; a "-" size
 * means no body, so it reads as 0.  Inside quotes, \" and \\ are the escaped
 * quote and backslash; other escapes (\x0a) are kept as written.  The
 * request line is split into method, path and protocol when it has that
 * shape ("METHOD target HTTP/x"); a request of another shape (a probe's
 * garbage) keeps only request.
 *
 * The parser checks the layout only: the values (a day 32, a status 999)
 * are checked by the input functions of the columns they fill, so a bad
 * value is a dead letter with PostgreSQL's own message.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "funcapi.h"
#include "utils/builtins.h"

#include "access_log.h"

PG_FUNCTION_INFO_V1(pipeline_parse_access_log);

static const char *const field_names[ACCESS_LOG_NFIELDS] = {
	"client", "ident", "auth_user", "time", "request", "method", "path", "protocol",
	"status", "bytes", "referer", "user_agent", "extra"
};

static const char *const month_names[12] = {
	"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"
};

/* The field a name stands for, or -1 */
int
AccessLogFieldFromName(const char *name)
{
	for (int i = 0; i < ACCESS_LOG_NFIELDS; i++)
		if (strcmp(name, field_names[i]) == 0)
			return i;
	return -1;
}

static void
SetValue(AccessLogValue *value, const char *start, int len, bool escaped)
{
	if (len == 1 && start[0] == '-')
		start = NULL;			/* "-": absent */
	value->start = start;
	value->len = start ? len : 0;
	value->escaped = escaped;
}

/* Skip the spaces between two fields; false if there are none */
static bool
SkipSpaces(const char **p, const char *end)
{
	const char *start = *p;

	while (*p < end && **p == ' ')
		(*p)++;
	return *p > start;
}

/* A field up to the next space; false if empty */
static bool
Token(const char **p, const char *end, AccessLogValue *value)
{
	const char *start = *p;

	while (*p < end && **p != ' ')
		(*p)++;
	if (*p == start)
		return false;
	SetValue(value, start, *p - start, false);
	return true;
}

/* A double-quoted field; false if it does not start with a quote or never ends */
static bool
Quoted(const char **p, const char *end, AccessLogValue *value)
{
	const char *start;
	bool		escaped = false;

	if (*p == end || **p != '"')
		return false;
	start = ++(*p);
	while (*p < end && **p != '"')
	{
		if (**p == '\\' && *p + 1 < end)
		{
			escaped = true;
			(*p)++;
		}
		(*p)++;
	}
	if (*p == end)
		return false;
	SetValue(value, start, *p - start, escaped);
	(*p)++;
	return true;
}

static bool
Digits(const char *s, int n)
{
	for (int i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/* [10/Oct/2000:13:55:36 -0700], rewritten as 2000-10-10 13:55:36-0700 */
static bool
Time(const char **p, const char *end, AccessLogEntry *entry)
{
	const char *s = *p;
	int			month = -1;

	/* [dd/Mon/yyyy:HH:MM:SS +hhmm] is 28 bytes */
	if (end - s < 28 || s[0] != '[' || s[3] != '/' || s[7] != '/' || s[12] != ':' ||
		s[15] != ':' || s[18] != ':' || s[21] != ' ' || (s[22] != '+' && s[22] != '-') ||
		s[27] != ']')
		return false;
	if (!Digits(s + 1, 2) || !Digits(s + 8, 4) || !Digits(s + 13, 2) || !Digits(s + 16, 2) ||
		!Digits(s + 19, 2) || !Digits(s + 23, 4))
		return false;
	for (int i = 0; i < 12; i++)
		if (memcmp(s + 4, month_names[i], 3) == 0)
			month = i + 1;
	if (month < 0)
		return false;
	snprintf(entry->time_text, sizeof(entry->time_text), "%.4s-%02d-%.2s %.2s:%.2s:%.2s%.5s",
			 s + 8, month, s + 1, s + 13, s + 16, s + 19, s + 22);
	SetValue(&entry->values[ACCESS_LOG_TIME], entry->time_text, strlen(entry->time_text), false);
	*p = s + 28;
	return true;
}

/* method, path and protocol, when the request reads "METHOD target HTTP/x" */
static void
SplitRequest(AccessLogEntry *entry)
{
	AccessLogValue *request = &entry->values[ACCESS_LOG_REQUEST];
	const char *s = request->start;
	const char *end = s + request->len;
	const char *method_end;
	const char *path_end;

	if (s == NULL)
		return;
	for (method_end = s; method_end < end && *method_end >= 'A' && *method_end <= 'Z'; method_end++)
		;
	if (method_end == s || method_end == end || *method_end != ' ')
		return;
	path_end = memchr(method_end + 1, ' ', end - method_end - 1);
	if (path_end == NULL || path_end == method_end + 1 || end - path_end < 6 ||
		memcmp(path_end + 1, "HTTP/", 5) != 0 || memchr(path_end + 1, ' ', end - path_end - 1) != NULL)
		return;
	SetValue(&entry->values[ACCESS_LOG_METHOD], s, method_end - s, false);
	SetValue(&entry->values[ACCESS_LOG_PATH], method_end + 1, path_end - method_end - 1, request->escaped);
	SetValue(&entry->values[ACCESS_LOG_PROTOCOL], path_end + 1, end - path_end - 1, request->escaped);
}

/*
 * Parse one line (a trailing line break is ignored).  Returns NULL, or why
 * the line is not an access log line.  The values point into the line and
 * into entry.
 */
const char *
AccessLogParse(const char *line, int len, AccessLogEntry *entry)
{
	const char *p = line;
	const char *end = line + len;
	AccessLogValue *values = entry->values;

	memset(values, 0, sizeof(entry->values));
	while (end > p && (end[-1] == '\n' || end[-1] == '\r'))
		end--;
	if (memchr(p, '\0', end - p) != NULL)
		return "access log line contains a zero byte";
	if (!Token(&p, end, &values[ACCESS_LOG_CLIENT]))
		return "access log line does not start with the client address";
	if (!SkipSpaces(&p, end) || !Token(&p, end, &values[ACCESS_LOG_IDENT]))
		return "access log line has no ident field after the client address";
	if (!SkipSpaces(&p, end) || !Token(&p, end, &values[ACCESS_LOG_AUTH_USER]))
		return "access log line has no user field after the ident field";
	if (!SkipSpaces(&p, end) || !Time(&p, end, entry))
		return "access log line has no time like [10/Oct/2000:13:55:36 -0700] after the user field";
	if (!SkipSpaces(&p, end) || !Quoted(&p, end, &values[ACCESS_LOG_REQUEST]))
		return "access log line has no quoted request like \"GET /index.html HTTP/1.1\" after the time";
	SplitRequest(entry);
	if (!SkipSpaces(&p, end) || end - p < 3 || !Digits(p, 3) || (end - p > 3 && p[3] != ' '))
		return "access log line has no three-digit status after the request";
	SetValue(&values[ACCESS_LOG_STATUS], p, 3, false);
	p += 3;
	if (!SkipSpaces(&p, end) || !Token(&p, end, &values[ACCESS_LOG_BYTES]) ||
		(values[ACCESS_LOG_BYTES].start != NULL &&
		 !Digits(values[ACCESS_LOG_BYTES].start, values[ACCESS_LOG_BYTES].len)))
		return "access log line has no response size (digits, or - for none) after the status";
	if (values[ACCESS_LOG_BYTES].start == NULL)
	{
		strcpy(entry->zero, "0");
		SetValue(&values[ACCESS_LOG_BYTES], entry->zero, 1, false);
	}
	if (p == end)
		return NULL;			/* Common Log Format */
	if (!SkipSpaces(&p, end))
		return "access log line has no space after the response size";
	if (p < end && *p == '"')
	{
		if (!Quoted(&p, end, &values[ACCESS_LOG_REFERER]))
			return "access log line has an unterminated quoted referer";
		if (!SkipSpaces(&p, end) || !Quoted(&p, end, &values[ACCESS_LOG_USER_AGENT]))
			return "access log line has a referer but no quoted user agent after it";
		if (p == end)
			return NULL;		/* Combined Log Format */
		if (!SkipSpaces(&p, end))
			return "access log line has no space after the user agent";
	}
	if (p < end)
		SetValue(&values[ACCESS_LOG_EXTRA], p, end - p, false);
	return NULL;
}

/* Copy an escaped value to out (at least value->len bytes), undoing \" and \\; the length */
int
AccessLogUnescape(const AccessLogValue *value, char *out)
{
	int			n = 0;

	for (int i = 0; i < value->len; i++)
	{
		char		c = value->start[i];

		if (c == '\\' && i + 1 < value->len &&
			(value->start[i + 1] == '"' || value->start[i + 1] == '\\'))
			c = value->start[++i];
		out[n++] = c;
	}
	return n;
}

/*
 * pipeline.parse_access_log(line text): the fields of a line, typed; an
 * error saying what is wrong with a line that is not one.
 */
Datum
pipeline_parse_access_log(PG_FUNCTION_ARGS)
{
	text	   *line = PG_GETARG_TEXT_PP(0);
	TupleDesc	tupdesc;
	AccessLogEntry entry;
	const char *problem;
	char	   *fields[ACCESS_LOG_NFIELDS];

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE ||
		tupdesc->natts != ACCESS_LOG_NFIELDS)
		elog(ERROR, "pipeline.parse_access_log must return a record of %d fields", ACCESS_LOG_NFIELDS);
	problem = AccessLogParse(VARDATA_ANY(line), VARSIZE_ANY_EXHDR(line), &entry);
	if (problem)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("%s", problem),
				 errhint("Give a line in Common or Combined Log Format, for example "
						 "127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] \"GET /index.html HTTP/1.1\" 200 2326 \"-\" \"curl/8.0\".")));
	for (int i = 0; i < ACCESS_LOG_NFIELDS; i++)
	{
		AccessLogValue *value = &entry.values[i];

		fields[i] = NULL;
		if (value->start == NULL)
			continue;
		fields[i] = value->escaped ? palloc(value->len + 1) : pnstrdup(value->start, value->len);
		if (value->escaped)
			fields[i][AccessLogUnescape(value, fields[i])] = '\0';
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(BuildTupleFromCStrings(TupleDescGetAttInMetadata(tupdesc), fields)));
}
