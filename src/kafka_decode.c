/*-------------------------------------------------------------------------
 *
 * kafka_decode.c
 *		Turns one Kafka message into one line of COPY input.
 *
 * The worker feeds the lines of a batch to PostgreSQL's COPY machinery, so
 * type conversion, constraints, defaults, triggers and indexes behave as
 * for COPY.  This file only does what COPY cannot: take fields out of JSON
 * (with PostgreSQL's own JSON parser, which reports errors instead of
 * throwing them, behind a fast scanner for flat objects that hands anything
 * unusual to it), check the encoding, and append the Kafka metadata columns.
 * A message it cannot turn into a line is reported with a reason, so that
 * it goes to the dead-letter table without costing a subtransaction.
 *
 * JSON fields are named by dotted paths ("user.id"); a path that names an
 * object or array yields that value's JSON text.  Format access_log takes
 * the fields of a web server's log line (access_log.c), named by field.
 * Lines are in COPY text format, except for format csv, where the message
 * is the CSV record.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/timestamp.h"

#include "access_log.h"
#include "kafka_decode.h"

#define MAX_PATH_DEPTH 16
#define MAX_JSON_NESTING 1000

typedef struct ColumnPath
{
	int			depth;
	char	   *names[MAX_PATH_DEPTH];
} ColumnPath;

typedef struct FieldValue
{
	bool		present;
	bool		isnull;
	bool		plain;			/* needs no COPY escaping */
	const char *start;			/* de-escaped scalar, or JSON text of an object or array */
	int			len;
} FieldValue;

struct KafkaDecoder
{
	KafkaFormat format;
	int			ncolumns;
	ColumnPath *paths;
	int		   *name_lengths;	/* of top-level names, when every path is one */
	int		   *log_fields;		/* format access_log: the AccessLogField per column */
	KafkaKeyKind key_kind;
	bool		with_partition;
	bool		with_offset;
	bool		with_timestamp;
	bool		with_headers;
	FieldValue *values;			/* per column, for the message at hand */
};

/* Parser state for one JSON message */
typedef struct JsonWalk
{
	KafkaDecoder *decoder;
	JsonLexContext *lex;
	int			depth;			/* 1 inside the top-level object */
	int			array_depth;	/* open arrays: paths never cross them */
	char	   *names[MAX_PATH_DEPTH + 1];	/* field name at each depth */
	int			pending_column; /* column whose value starts next, or -1 */
	int			capture_column; /* column whose object/array is open, or -1 */
	int			capture_depth;
	bool		top_is_object;
} JsonWalk;

KafkaFormat
KafkaFormatFromName(const char *name)
{
	if (strcmp(name, "json") == 0)
		return KAFKA_FORMAT_JSON;
	if (strcmp(name, "jsonb") == 0)
		return KAFKA_FORMAT_JSONB;
	if (strcmp(name, "text") == 0)
		return KAFKA_FORMAT_TEXT;
	if (strcmp(name, "csv") == 0)
		return KAFKA_FORMAT_CSV;
	if (strcmp(name, "access_log") == 0)
		return KAFKA_FORMAT_ACCESS_LOG;
	elog(ERROR, "unknown kafka source format \"%s\"", name);
	return KAFKA_FORMAT_TEXT;	/* keep compiler quiet */
}

KafkaDecoder *
KafkaDecoderCreate(KafkaFormat format, int ncolumns, char **paths,
				   KafkaKeyKind key_kind, bool with_partition,
				   bool with_offset, bool with_timestamp, bool with_headers)
{
	KafkaDecoder *decoder = palloc0(sizeof(KafkaDecoder));

	decoder->format = format;
	decoder->ncolumns = ncolumns;
	decoder->key_kind = key_kind;
	decoder->with_partition = with_partition;
	decoder->with_offset = with_offset;
	decoder->with_timestamp = with_timestamp;
	decoder->with_headers = with_headers;
	decoder->values = palloc0(sizeof(FieldValue) * Max(ncolumns, 1));
	decoder->paths = palloc0(sizeof(ColumnPath) * Max(ncolumns, 1));

	for (int i = 0; format == KAFKA_FORMAT_JSON && i < ncolumns; i++)
	{
		char	   *copy = pstrdup(paths[i]);
		char	   *save = NULL;
		ColumnPath *path = &decoder->paths[i];

		for (char *part = strtok_r(copy, ".", &save); part != NULL;
			 part = strtok_r(NULL, ".", &save))
		{
			if (path->depth == MAX_PATH_DEPTH)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("JSON path \"%s\" is deeper than %d levels", paths[i], MAX_PATH_DEPTH)));
			path->names[path->depth++] = part;
		}
		if (path->depth == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("JSON path for column %d is empty", i + 1)));
	}

	if (format == KAFKA_FORMAT_ACCESS_LOG)
	{
		decoder->log_fields = palloc(sizeof(int) * Max(ncolumns, 1));
		for (int i = 0; i < ncolumns; i++)
		{
			decoder->log_fields[i] = AccessLogFieldFromName(paths[i]);
			if (decoder->log_fields[i] < 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("\"%s\" is not a field of an access log line", paths[i])));
		}
	}

	if (format == KAFKA_FORMAT_JSON)
	{
		decoder->name_lengths = palloc(sizeof(int) * Max(ncolumns, 1));
		for (int i = 0; i < ncolumns; i++)
		{
			if (decoder->paths[i].depth != 1)
			{
				pfree(decoder->name_lengths);
				decoder->name_lengths = NULL;
				break;
			}
			decoder->name_lengths[i] = strlen(decoder->paths[i].names[0]);
		}
	}
	return decoder;
}

/* Column whose path is the current field path, or -1 */
static int
MatchingColumn(JsonWalk *walk)
{
	KafkaDecoder *decoder = walk->decoder;

	for (int c = 0; c < decoder->ncolumns; c++)
	{
		ColumnPath *path = &decoder->paths[c];
		int			d;

		if (path->depth != walk->depth)
			continue;
		for (d = 0; d < path->depth; d++)
		{
			if (strcmp(path->names[d], walk->names[d + 1]) != 0)
				break;
		}
		if (d == path->depth)
			return c;
	}
	return -1;
}

static void
WalkObjectFieldStart(void *state, char *fname, bool isnull)
{
	JsonWalk   *walk = (JsonWalk *) state;

	/* names[1..depth] are all set only when no array is open */
	if (walk->depth <= MAX_PATH_DEPTH && walk->array_depth == 0)
	{
		walk->names[walk->depth] = fname;
		walk->pending_column = MatchingColumn(walk);
	}
	else
		walk->pending_column = -1;
}

static void
WalkStructStart(void *state)
{
	JsonWalk   *walk = (JsonWalk *) state;

	if (walk->depth == 0)
		walk->top_is_object = (walk->lex->token_type == JSON_TOKEN_OBJECT_START);
	if (walk->pending_column >= 0 && walk->capture_column < 0)
	{
		walk->capture_column = walk->pending_column;
		walk->capture_depth = walk->depth;
		walk->decoder->values[walk->capture_column].start = walk->lex->token_start;
	}
	walk->pending_column = -1;
	walk->depth++;
}

static void
WalkStructEnd(void *state)
{
	JsonWalk   *walk = (JsonWalk *) state;

	walk->depth--;
	if (walk->capture_column >= 0 && walk->depth == walk->capture_depth)
	{
		FieldValue *value = &walk->decoder->values[walk->capture_column];

		value->len = walk->lex->prev_token_terminator - value->start;
		value->present = true;
		value->isnull = false;
		walk->capture_column = -1;
	}
}

static void
WalkArrayStart(void *state)
{
	WalkStructStart(state);
	((JsonWalk *) state)->array_depth++;
}

static void
WalkArrayEnd(void *state)
{
	((JsonWalk *) state)->array_depth--;
	WalkStructEnd(state);
}

static void
WalkArrayElementStart(void *state, bool isnull)
{
	/* array elements are not addressable by dotted paths */
	((JsonWalk *) state)->pending_column = -1;
}

static void
WalkScalar(void *state, char *token, JsonTokenType tokentype)
{
	JsonWalk   *walk = (JsonWalk *) state;

	if (walk->pending_column >= 0)
	{
		FieldValue *value = &walk->decoder->values[walk->pending_column];

		value->present = true;
		value->isnull = (tokentype == JSON_TOKEN_NULL);
		value->start = token;
		value->len = value->isnull ? 0 : strlen(token);
	}
	walk->pending_column = -1;
}

/* Append a value in COPY text format */
static void
AppendCopyText(StringInfo out, const char *s, int len)
{
	const char *end = s + len;
	const char *run = s;

	for (const char *p = s; p < end; p++)
	{
		const char *escape;

		switch (*p)
		{
			case '\\':
				escape = "\\\\";
				break;
			case '\t':
				escape = "\\t";
				break;
			case '\n':
				escape = "\\n";
				break;
			case '\r':
				escape = "\\r";
				break;
			default:
				continue;
		}
		appendBinaryStringInfo(out, run, p - run);
		appendStringInfoString(out, escape);
		run = p + 1;
	}
	appendBinaryStringInfo(out, run, end - run);
}

/* Append a value as a CSV field, always quoted */
static void
AppendCsvField(StringInfo out, const char *s, int len)
{
	appendStringInfoChar(out, '"');
	for (int i = 0; i < len; i++)
	{
		if (s[i] == '"')
			appendStringInfoChar(out, '"');
		appendStringInfoChar(out, s[i]);
	}
	appendStringInfoChar(out, '"');
}

static void
AppendField(KafkaDecoder *decoder, StringInfo out, bool first, const char *s, int len)
{
	bool		csv = decoder->format == KAFKA_FORMAT_CSV;

	if (!first)
		appendStringInfoChar(out, csv ? ',' : '\t');
	if (s == NULL)
	{
		/* COPY csv reads an unquoted empty field as NULL */
		if (!csv)
			appendStringInfoString(out, "\\N");
	}
	else if (csv)
		AppendCsvField(out, s, len);
	else
		AppendCopyText(out, s, len);
}

static void
AppendJsonFields(KafkaDecoder *decoder, StringInfo out)
{
	for (int c = 0; c < decoder->ncolumns; c++)
	{
		FieldValue *value = &decoder->values[c];

		if (!value->present || value->isnull)
			AppendField(decoder, out, c == 0, NULL, 0);
		else if (value->plain)
		{
			if (c > 0)
				appendStringInfoChar(out, '\t');
			appendBinaryStringInfo(out, value->start, value->len);
		}
		else
			AppendField(decoder, out, c == 0, value->start, value->len);
	}
}

/* Bytes as a JSON string: the text if valid, else \\x and hex digits */
static void
AppendJsonBytes(StringInfo out, const char *s, int len)
{
	if (pg_verify_mbstr(GetDatabaseEncoding(), s, len, true))
	{
		char	   *text = pnstrdup(s, len);

		escape_json(out, text);
		pfree(text);
	}
	else
	{
		appendStringInfoString(out, "\"\\\\x");
		enlargeStringInfo(out, len * 2);
		out->len += hex_encode(s, len, out->data + out->len);
		appendStringInfoChar(out, '"');
	}
}

/* Headers as a JSON object of name: value; jsonb keeps the last of a repeated name */
static void
AppendHeadersJson(StringInfo out, const KafkaMessage *msg)
{
	appendStringInfoChar(out, '{');
	for (int i = 0; i < msg->nheaders; i++)
	{
		KafkaHeader *header = &msg->headers[i];

		if (i > 0)
			appendStringInfoString(out, ", ");
		AppendJsonBytes(out, header->name, strlen(header->name));
		appendStringInfoString(out, ": ");
		if (header->value == NULL)
			appendStringInfoString(out, "null");
		else
			AppendJsonBytes(out, header->value, header->value_len);
	}
	appendStringInfoChar(out, '}');
}

static void
AppendMetadata(KafkaDecoder *decoder, const KafkaMessage *msg, StringInfo out)
{
	char		buf[64];

	if (decoder->key_kind == KAFKA_KEY_TEXT)
		AppendField(decoder, out, false, msg->key, msg->key_len);
	else if (decoder->key_kind == KAFKA_KEY_BYTEA)
	{
		if (msg->key == NULL)
			AppendField(decoder, out, false, NULL, 0);
		else
		{
			StringInfoData hex;

			initStringInfo(&hex);
			appendStringInfoString(&hex, "\\x");
			enlargeStringInfo(&hex, msg->key_len * 2);
			hex.len += hex_encode(msg->key, msg->key_len, hex.data + hex.len);
			hex.data[hex.len] = '\0';
			AppendField(decoder, out, false, hex.data, hex.len);
			pfree(hex.data);
		}
	}
	if (decoder->with_partition)
	{
		snprintf(buf, sizeof(buf), "%d", msg->partition);
		AppendField(decoder, out, false, buf, strlen(buf));
	}
	if (decoder->with_offset)
	{
		snprintf(buf, sizeof(buf), INT64_FORMAT, msg->offset);
		AppendField(decoder, out, false, buf, strlen(buf));
	}
	if (decoder->with_timestamp)
	{
		if (msg->timestamp_ms < 0)
			AppendField(decoder, out, false, NULL, 0);
		else
		{
			/* ISO 8601 in UTC reads back the same under any DateStyle */
			TimestampTz ts = (TimestampTz) (msg->timestamp_ms -
											((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000)) * 1000;
			struct pg_tm tm;
			fsec_t		fsec;

			if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
				AppendField(decoder, out, false, NULL, 0);
			else
			{
				snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%06d+00",
						 tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min,
						 tm.tm_sec, (int) fsec);
				AppendField(decoder, out, false, buf, strlen(buf));
			}
		}
	}
	if (decoder->with_headers)
	{
		if (msg->nheaders < 0)
			AppendField(decoder, out, false, NULL, 0);
		else
		{
			StringInfoData json;

			initStringInfo(&json);
			AppendHeadersJson(&json, msg);
			AppendField(decoder, out, false, json.data, json.len);
			pfree(json.data);
		}
	}
	appendStringInfoChar(out, '\n');
}

/*
 * True if JSON text nests deeper than MAX_JSON_NESTING.  The parser recurses
 * per level and would fail the whole batch on its stack check, so such a
 * message is refused before parsing.  Brackets inside strings do not count.
 */
static bool
JsonTooDeep(const char *s, int len)
{
	int			depth = 0;
	bool		in_string = false;

	for (int i = 0; i < len; i++)
	{
		char		c = s[i];

		if (in_string)
		{
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = false;
		}
		else if (c == '"')
			in_string = true;
		else if (c == '{' || c == '[')
		{
			if (++depth > MAX_JSON_NESTING)
				return true;
		}
		else if (c == '}' || c == ']')
			depth--;
	}
	return false;
}

/*
 * The fast path for the usual message: one flat JSON object whose strings
 * hold no escapes or control characters, with top-level columns only.  It
 * checks the whole message against JSON's grammar and gives up (false) on
 * anything else — escapes, nested values, invalid JSON — which then goes
 * through PostgreSQL's parser for its values or its error message.  It
 * fills decoder->values as that path would: the last of duplicate keys wins.
 */
static inline const char *
SkipJsonSpace(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

/* A string without escapes at p: its contents, and the position after it */
static inline const char *
ScanPlainString(const char *p, const char *end, const char **start, int *len)
{
	const char *q;

	if (p == end || *p != '"')
		return NULL;
	for (q = p + 1; q < end; q++)
	{
		unsigned char c = (unsigned char) *q;

		if (c == '"')
		{
			*start = p + 1;
			*len = q - (p + 1);
			return q + 1;
		}
		if (c == '\\' || c < 0x20)
			return NULL;
	}
	return NULL;
}

static inline const char *
SkipDigits(const char *p, const char *end)
{
	while (p < end && *p >= '0' && *p <= '9')
		p++;
	return p;
}

/* A number by JSON's grammar, or NULL */
static const char *
ScanNumber(const char *p, const char *end)
{
	const char *digits;

	if (p < end && *p == '-')
		p++;
	if (p == end || *p < '0' || *p > '9')
		return NULL;
	if (*p == '0')
		p++;
	else
		p = SkipDigits(p, end);
	if (p < end && *p == '.')
	{
		digits = ++p;
		p = SkipDigits(p, end);
		if (p == digits)
			return NULL;
	}
	if (p < end && (*p == 'e' || *p == 'E'))
	{
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		digits = p;
		p = SkipDigits(p, end);
		if (p == digits)
			return NULL;
	}
	return p;
}

static inline const char *
ScanLiteral(const char *p, const char *end, const char *word, int len)
{
	return (end - p >= len && memcmp(p, word, len) == 0) ? p + len : NULL;
}

static bool
ScanFlatObject(KafkaDecoder *decoder, const char *s, int len)
{
	const char *end = s + len;
	const char *p = SkipJsonSpace(s, end);

	if (p == end || *p != '{')
		return false;
	p = SkipJsonSpace(p + 1, end);
	if (p < end && *p == '}')
		return SkipJsonSpace(p + 1, end) == end;
	for (;;)
	{
		const char *name;
		int			name_len;
		const char *value;
		int			value_len = 0;
		bool		isnull = false;
		int			column = -1;

		p = ScanPlainString(p, end, &name, &name_len);
		if (p == NULL)
			return false;
		p = SkipJsonSpace(p, end);
		if (p == end || *p != ':')
			return false;
		p = SkipJsonSpace(p + 1, end);
		if (p == end)
			return false;
		value = p;
		switch (*p)
		{
			case '"':
				p = ScanPlainString(p, end, &value, &value_len);
				break;
			case 't':
				p = ScanLiteral(p, end, "true", 4);
				value_len = 4;
				break;
			case 'f':
				p = ScanLiteral(p, end, "false", 5);
				value_len = 5;
				break;
			case 'n':
				p = ScanLiteral(p, end, "null", 4);
				isnull = true;
				break;
			default:
				p = ScanNumber(p, end);
				if (p != NULL)
					value_len = p - value;
				break;
		}
		if (p == NULL)
			return false;

		for (int c = 0; c < decoder->ncolumns; c++)
		{
			if (decoder->name_lengths[c] == name_len &&
				memcmp(decoder->paths[c].names[0], name, name_len) == 0)
			{
				column = c;
				break;
			}
		}
		if (column >= 0)
		{
			FieldValue *field = &decoder->values[column];

			field->present = true;
			field->isnull = isnull;
			field->plain = true;	/* no backslash or control character */
			field->start = value;
			field->len = value_len;
		}

		p = SkipJsonSpace(p, end);
		if (p == end)
			return false;
		if (*p == '}')
			return SkipJsonSpace(p + 1, end) == end;
		if (*p != ',')
			return false;
		p = SkipJsonSpace(p + 1, end);
	}
}

static bool
DecodeJsonFields(KafkaDecoder *decoder, const KafkaMessage *msg, StringInfo out, char **error)
{
	JsonSemAction sem;
	JsonWalk	walk;
	JsonParseErrorType result;

	memset(decoder->values, 0, sizeof(FieldValue) * decoder->ncolumns);
	if (decoder->name_lengths != NULL && ScanFlatObject(decoder, msg->payload, msg->payload_len))
	{
		AppendJsonFields(decoder, out);
		return true;
	}
	memset(decoder->values, 0, sizeof(FieldValue) * decoder->ncolumns);
	if (JsonTooDeep(msg->payload, msg->payload_len))
	{
		*error = psprintf("JSON message nests deeper than %d levels", MAX_JSON_NESTING);
		return false;
	}
	memset(&walk, 0, sizeof(walk));
	walk.decoder = decoder;
	walk.pending_column = -1;
	walk.capture_column = -1;
	walk.lex = makeJsonLexContextCstringLen(msg->payload, msg->payload_len,
											GetDatabaseEncoding(), true);

	memset(&sem, 0, sizeof(sem));
	sem.semstate = &walk;
	sem.object_start = WalkStructStart;
	sem.object_end = WalkStructEnd;
	sem.array_start = WalkArrayStart;
	sem.array_end = WalkArrayEnd;
	sem.object_field_start = WalkObjectFieldStart;
	sem.array_element_start = WalkArrayElementStart;
	sem.scalar = WalkScalar;

	result = pg_parse_json(walk.lex, &sem);
	if (result != JSON_SUCCESS)
	{
		*error = psprintf("invalid JSON: %s", json_errdetail(result, walk.lex));
		return false;
	}
	if (!walk.top_is_object)
	{
		*error = pstrdup("JSON message is not an object");
		return false;
	}
	AppendJsonFields(decoder, out);
	return true;
}

/*
 * A CSV message must be exactly one record: COPY would otherwise read an
 * unquoted line break as a second row, an open quote as running into the
 * next message, and a lone \. as the end of the data.
 */
static const char *
CsvRecordProblem(const char *s, int len)
{
	bool		in_quotes = false;

	if (len == 2 && s[0] == '\\' && s[1] == '.')
		return "CSV message is the end-of-data marker \\.";
	for (int i = 0; i < len; i++)
	{
		if (s[i] == '"')
			in_quotes = !in_quotes;
		else if (!in_quotes && (s[i] == '\n' || s[i] == '\r'))
			return "CSV message holds more than one record";
		else if (s[i] == '\0')
			return "CSV message contains a zero byte";
	}
	return in_quotes ? "CSV message ends inside a quoted field" : NULL;
}

static bool
AppendAccessLogFields(KafkaDecoder *decoder, const KafkaMessage *msg, StringInfo out, char **error)
{
	AccessLogEntry entry;
	const char *problem = AccessLogParse(msg->payload, msg->payload_len, &entry);

	if (problem)
	{
		*error = pstrdup(problem);
		return false;
	}
	for (int c = 0; c < decoder->ncolumns; c++)
	{
		AccessLogValue *value = &entry.values[decoder->log_fields[c]];

		if (value->escaped)
		{
			char	   *plain = palloc(value->len);

			AppendField(decoder, out, c == 0, plain, AccessLogUnescape(value, plain));
			pfree(plain);
		}
		else
			AppendField(decoder, out, c == 0, value->start, value->len);
	}
	return true;
}

/*
 * Append the COPY line for a message to out; returns false with a reason
 * (and out unchanged) if the message cannot be stored.
 */
bool
KafkaDecode(KafkaDecoder *decoder, const KafkaMessage *msg, StringInfo out, char **error)
{
	int			start_len = out->len;
	int			len = msg->payload_len;

	if (msg->payload == NULL)
	{
		*error = pstrdup("message has no value (tombstone)");
		return false;
	}
	if (!pg_verify_mbstr(GetDatabaseEncoding(), msg->payload, len, true))
	{
		*error = psprintf("message is not valid %s", GetDatabaseEncodingName());
		return false;
	}
	if (msg->key != NULL && decoder->key_kind == KAFKA_KEY_TEXT &&
		!pg_verify_mbstr(GetDatabaseEncoding(), msg->key, msg->key_len, true))
	{
		*error = psprintf("message key is not valid %s", GetDatabaseEncodingName());
		return false;
	}

	if (decoder->format == KAFKA_FORMAT_JSONB && JsonTooDeep(msg->payload, len))
	{
		*error = psprintf("JSON message nests deeper than %d levels", MAX_JSON_NESTING);
		return false;
	}

	switch (decoder->format)
	{
		case KAFKA_FORMAT_JSON:
			if (!DecodeJsonFields(decoder, msg, out, error))
			{
				out->len = start_len;
				out->data[start_len] = '\0';
				return false;
			}
			break;
		case KAFKA_FORMAT_JSONB:
			{
				JsonLexContext *lex = makeJsonLexContextCstringLen(msg->payload, len,
																   GetDatabaseEncoding(), false);
				JsonParseErrorType result = pg_parse_json(lex, &nullSemAction);

				if (result != JSON_SUCCESS)
				{
					*error = psprintf("invalid JSON: %s", json_errdetail(result, lex));
					return false;
				}
				AppendField(decoder, out, true, msg->payload, len);
				break;
			}
		case KAFKA_FORMAT_TEXT:
			AppendField(decoder, out, true, msg->payload, len);
			break;
		case KAFKA_FORMAT_ACCESS_LOG:
			if (!AppendAccessLogFields(decoder, msg, out, error))
				return false;
			break;
		case KAFKA_FORMAT_CSV:
			/* one record per message: a trailing line break is not a field */
			while (len > 0 && (msg->payload[len - 1] == '\n' || msg->payload[len - 1] == '\r'))
				len--;
			{
				const char *problem = CsvRecordProblem(msg->payload, len);

				if (problem)
				{
					*error = pstrdup(problem);
					return false;
				}
			}
			appendBinaryStringInfo(out, msg->payload, len);
			break;
	}
	AppendMetadata(decoder, msg, out);
	return true;
}
