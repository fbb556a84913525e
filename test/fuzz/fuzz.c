/*-------------------------------------------------------------------------
 *
 * fuzz.c
 *		libFuzzer targets for pg_pipeline's hand-written parsers, run inside
 *		a real PostgreSQL backend.
 *
 * The parsers call PostgreSQL (palloc, ereport, input functions, the JSON
 * parser, time zones), so they are fuzzed where they run: this module is
 * loaded into a single-user postgres, and pipeline_fuzz(target, arguments)
 * hands libFuzzer's driver one target.  Each input is parsed in a memory
 * context reset after it.  The message decoders must never raise an error
 * (a worker's batch would fail on one bad message): for them an error is a
 * finding; the schedule and input-function targets may raise the input
 * functions' errors, which are answers.  Differential targets check the parser
 * against PostgreSQL's own: a disagreement aborts, which libFuzzer records
 * as a crash with its input.
 *
 * Targets:
 *   access_log     AccessLogParse and unescaping (access_log.c)
 *   kafka_json     format json: the flat scanner (every column a top-level
 *                  key) must give the same line as PostgreSQL's JSON parser
 *                  (the same columns plus a nested path)
 *   kafka_formats  formats jsonb, text, csv and access_log, with metadata
 *   schedule       cron / @every / @once parsing and the next two fires
 *                  in UTC and in a zone with daylight saving time
 *   fast_input     copy_input.c's ISO timestamp and plain decimal input must
 *                  equal timestamptz_in, timestamp_in and numeric_in
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <stdio.h>
#include <stdlib.h>

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "pgtime.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "access_log.h"
#include "kafka_decode.h"
#include "schedule.h"

PG_MODULE_MAGIC;

/* libFuzzer's driver, from libclang_rt.fuzzer_no_main */
extern int	LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback) (const uint8_t *data, size_t size));

/* fuzz_fast_input.c: copy_input.c's input functions against PostgreSQL's */
extern void FuzzFastInput(const char *text);

PG_FUNCTION_INFO_V1(pipeline_fuzz);

static void (*fuzz_target) (const uint8_t *data, size_t size);
static bool errors_are_findings;
static MemoryContext fuzz_context;
static KafkaDecoder *flat_decoder;
static KafkaDecoder *nested_decoder;
static KafkaDecoder *format_decoders[4];
static pg_tz *dst_zone;

static void
Finding(const char *what, const uint8_t *data, size_t size)
{
	fprintf(stderr, "pipeline_fuzz: %s for input of %zu bytes: %.*s\n", what, size, (int) Min(size, 200), data);
	abort();
}

static char *
NulTerminated(const uint8_t *data, size_t size)
{
	char	   *text = palloc(size + 1);

	memcpy(text, data, size);
	text[size] = '\0';
	return text;
}

static void
FuzzAccessLog(const uint8_t *data, size_t size)
{
	AccessLogEntry entry;

	if (AccessLogParse((const char *) data, (int) size, &entry) != NULL)
		return;
	for (int i = 0; i < ACCESS_LOG_NFIELDS; i++)
	{
		AccessLogValue *value = &entry.values[i];

		if (value->start == NULL)
			continue;
		if (value->start != entry.time_text && value->start != entry.zero &&
			(value->len < 0 || value->start < (const char *) data ||
			 value->start + value->len > (const char *) data + size))
			Finding("a field outside the line", data, size);
		if (value->escaped)
			(void) AccessLogUnescape(value, palloc(value->len));
	}
}

static KafkaMessage
Message(const uint8_t *data, size_t size)
{
	KafkaMessage msg = {0};

	msg.partition = 3;
	msg.offset = 42;
	msg.timestamp_ms = 1767225600000;
	msg.key = "key";
	msg.key_len = 3;
	msg.payload = (char *) data;
	msg.payload_len = (int) size;
	msg.nheaders = -1;
	return msg;
}

static void
FuzzKafkaJson(const uint8_t *data, size_t size)
{
	KafkaMessage msg = Message(data, size);
	StringInfoData flat;
	StringInfoData nested;
	char	   *flat_error = NULL;
	char	   *nested_error = NULL;
	bool		flat_ok;
	bool		nested_ok;

	initStringInfo(&flat);
	initStringInfo(&nested);
	flat_ok = KafkaDecode(flat_decoder, &msg, &flat, &flat_error);
	nested_ok = KafkaDecode(nested_decoder, &msg, &nested, &nested_error);
	if (flat_ok != nested_ok)
		Finding(flat_ok ? "the flat scanner accepts what the JSON parser refuses"
				: "the flat scanner refuses what the JSON parser accepts", data, size);
	/* the nested decoder's line is the flat one's plus a tab and one more field */
	if (flat_ok && flat.len > 0 && flat.data[flat.len - 1] == '\n')
		flat.len--;
	if (flat_ok && (nested.len <= flat.len || strncmp(flat.data, nested.data, flat.len) != 0 ||
					nested.data[flat.len] != '\t'))
	{
		fprintf(stderr, "pipeline_fuzz: flat scanner (%d bytes): %s\npipeline_fuzz: JSON parser (%d bytes): %s\n", flat.len, flat.data, nested.len, nested.data);
		Finding("the flat scanner's fields differ from the JSON parser's", data, size);
	}
}

static void
FuzzKafkaFormats(const uint8_t *data, size_t size)
{
	KafkaMessage msg = Message(data, size);

	for (int i = 0; i < lengthof(format_decoders); i++)
	{
		StringInfoData line;
		char	   *error = NULL;

		initStringInfo(&line);
		if (!KafkaDecode(format_decoders[i], &msg, &line, &error) && (error == NULL || line.len != 0))
			Finding("a refused message without a reason, or with output", data, size);
	}
}

static void
FuzzSchedule(const uint8_t *data, size_t size)
{
	char	   *text = NulTerminated(data, size);
	Schedule	schedule;
	char	   *error = NULL;
	char	   *hint = NULL;
	TimestampTz after = 820454400000000;	/* 2026-01-01 00:00 UTC */

	if (!PipelineParseSchedule(text, &schedule, &error, &hint))
	{
		if (error == NULL)
			Finding("a refused schedule without a reason", data, size);
		return;
	}
	for (int zone = 0; zone < 2; zone++)
	{
		TimestampTz first;
		TimestampTz second;

		if (!PipelineNextFire(&schedule, after, zone == 0 ? pg_tzset("UTC") : dst_zone, &first))
			continue;
		if (first <= after)
			Finding("a next fire time not after the start", data, size);
		if (PipelineNextFire(&schedule, first, zone == 0 ? pg_tzset("UTC") : dst_zone, &second) && second <= first)
			Finding("fire times that do not increase", data, size);
	}
}

static void
FuzzFastInputTarget(const uint8_t *data, size_t size)
{
	if (memchr(data, '\0', size) != NULL)
		return;					/* input functions take C strings */
	FuzzFastInput(NulTerminated(data, size));
}

/* One input: parsed in a context reset after it; a raised error is an answer */
static int
FuzzOne(const uint8_t *data, size_t size)
{
	MemoryContext caller = MemoryContextSwitchTo(fuzz_context);

	PG_TRY();
	{
		fuzz_target(data, size);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(fuzz_context);
		if (errors_are_findings)
		{
			ErrorData  *error = CopyErrorData();

			fprintf(stderr, "pipeline_fuzz: error: %s\n", error->message);
			Finding("an error raised for a message", data, size);
		}
		FlushErrorState();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(caller);
	MemoryContextReset(fuzz_context);
	return 0;
}

static void
SetUpDecoders(void)
{
	char	   *flat_paths[] = {"id", "amount", "at", "name", "tags"};
	char	   *nested_paths[] = {"id", "amount", "at", "name", "tags", "user.address.city"};
	char	   *payload_path[] = {""};
	char	   *csv_columns[] = {"a", "b", "c"};
	char	   *log_fields[] = {"client", "time", "method", "path", "status", "bytes", "referer", "user_agent", "extra"};

	/* without metadata columns, the nested line is the flat one plus a field */
	flat_decoder = KafkaDecoderCreate(KafkaFormatFromName("json"), 5, flat_paths, KAFKA_KEY_NONE,
									  false, false, false, false);
	nested_decoder = KafkaDecoderCreate(KafkaFormatFromName("json"), 6, nested_paths, KAFKA_KEY_NONE,
										false, false, false, false);
	format_decoders[0] = KafkaDecoderCreate(KafkaFormatFromName("jsonb"), 1, payload_path, KAFKA_KEY_BYTEA,
											false, true, false, true);
	format_decoders[1] = KafkaDecoderCreate(KafkaFormatFromName("text"), 1, payload_path, KAFKA_KEY_TEXT,
											true, true, true, true);
	format_decoders[2] = KafkaDecoderCreate(KafkaFormatFromName("csv"), 3, csv_columns, KAFKA_KEY_TEXT,
											true, true, false, false);
	format_decoders[3] = KafkaDecoderCreate(KafkaFormatFromName("access_log"), 9, log_fields, KAFKA_KEY_NONE,
											false, true, false, false);
}

/*
 * pipeline_fuzz(target text, arguments text[]): runs libFuzzer on a target
 * with these command-line arguments (corpus folders, -runs=N, ...).  The
 * driver exits the process when it is done.
 */
Datum
pipeline_fuzz(PG_FUNCTION_ARGS)
{
	char	   *target = text_to_cstring(PG_GETARG_TEXT_PP(0));
	ArrayType  *arguments = PG_GETARG_ARRAYTYPE_P(1);
	Datum	   *values;
	int			n;
	int			argc;
	char	  **argv;

	if (strcmp(target, "access_log") == 0)
		fuzz_target = FuzzAccessLog;
	else if (strcmp(target, "kafka_json") == 0)
		fuzz_target = FuzzKafkaJson;
	else if (strcmp(target, "kafka_formats") == 0)
		fuzz_target = FuzzKafkaFormats;
	else if (strcmp(target, "schedule") == 0)
		fuzz_target = FuzzSchedule;
	else if (strcmp(target, "fast_input") == 0)
		fuzz_target = FuzzFastInputTarget;
	else
		elog(ERROR, "unknown fuzz target \"%s\"", target);
	errors_are_findings = fuzz_target != FuzzSchedule && fuzz_target != FuzzFastInputTarget;

	MemoryContextSwitchTo(TopMemoryContext);
	SetUpDecoders();
	dst_zone = pg_tzset("Europe/Paris");
	fuzz_context = AllocSetContextCreate(TopMemoryContext, "pipeline_fuzz input", ALLOCSET_DEFAULT_SIZES);

	deconstruct_array(arguments, TEXTOID, -1, false, TYPALIGN_INT, &values, NULL, &n);
	argc = n + 1;
	argv = palloc(sizeof(char *) * (argc + 1));
	argv[0] = target;
	for (int i = 0; i < n; i++)
		argv[i + 1] = TextDatumGetCString(values[i]);
	argv[argc] = NULL;
	PG_RETURN_INT32(LLVMFuzzerRunDriver(&argc, &argv, FuzzOne));
}
