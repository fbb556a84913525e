/*-------------------------------------------------------------------------
 *
 * access_log.h
 *		Web server access log lines (Common and Combined Log Format).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_PIPELINE_ACCESS_LOG_H
#define PG_PIPELINE_ACCESS_LOG_H

#include "fmgr.h"

/* The fields of a line, in the order of pipeline.parse_access_log's columns */
typedef enum AccessLogField
{
	ACCESS_LOG_CLIENT,
	ACCESS_LOG_IDENT,
	ACCESS_LOG_AUTH_USER,
	ACCESS_LOG_TIME,
	ACCESS_LOG_REQUEST,
	ACCESS_LOG_METHOD,
	ACCESS_LOG_PATH,
	ACCESS_LOG_PROTOCOL,
	ACCESS_LOG_STATUS,
	ACCESS_LOG_BYTES,
	ACCESS_LOG_REFERER,
	ACCESS_LOG_USER_AGENT,
	ACCESS_LOG_EXTRA,
	ACCESS_LOG_NFIELDS
} AccessLogField;

/* One field of a parsed line: NULL start for an absent or "-" field */
typedef struct AccessLogValue
{
	const char *start;
	int			len;
	bool		escaped;		/* a quoted field holding \" or \\ */
} AccessLogValue;

typedef struct AccessLogEntry
{
	AccessLogValue values[ACCESS_LOG_NFIELDS];
	char		time_text[32];	/* the time, as PostgreSQL reads it */
	char		zero[2];		/* "0": the bytes of a "-" size */
} AccessLogEntry;

extern int	AccessLogFieldFromName(const char *name);
extern const char *AccessLogParse(const char *line, int len, AccessLogEntry *entry);
extern int	AccessLogUnescape(const AccessLogValue *value, char *out);

extern PGDLLEXPORT Datum pipeline_parse_access_log(PG_FUNCTION_ARGS);

#endif							/* PG_PIPELINE_ACCESS_LOG_H */
