/*-------------------------------------------------------------------------
 *
 * schedule.h
 *		Job schedules: cron expressions (with an optional seconds field),
 *		@every <interval>, @once <timestamp>, and their next fire times in
 *		a time zone.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_PIPELINE_SCHEDULE_H
#define PG_PIPELINE_SCHEDULE_H

#include "fmgr.h"
#include "pgtime.h"
#include "utils/timestamp.h"

typedef enum ScheduleKind
{
	SCHEDULE_CRON,
	SCHEDULE_EVERY,
	SCHEDULE_ONCE
} ScheduleKind;

typedef struct Schedule
{
	ScheduleKind kind;
	/* cron: one bit per allowed value */
	uint64		seconds;
	uint64		minutes;
	uint32		hours;
	uint32		days;			/* bits 1..31 */
	uint32		months;			/* bits 1..12 */
	uint32		weekdays;		/* bits 0..6, Sunday = 0 */
	bool		days_restricted;	/* day-of-month field is not "*" */
	bool		weekdays_restricted;	/* day-of-week field is not "*" */
	/* @every: the period, fired at multiples of it since the Unix epoch */
	int64		period_usecs;
	/* @once */
	TimestampTz once_at;
} Schedule;

/*
 * Parse a schedule; on error return false with a message and a hint that
 * say what is wrong (a malformed @every interval or @once timestamp raises
 * the input function's own error).
 */
extern bool PipelineParseSchedule(const char *text, Schedule *schedule,
								  char **error, char **hint);

/* The first fire time strictly after "after", in time zone tz; false if none */
extern bool PipelineNextFire(const Schedule *schedule, TimestampTz after, pg_tz *tz,
							 TimestampTz *next);

extern Datum pipeline_next_runs(PG_FUNCTION_ARGS);

#endif
