/*-------------------------------------------------------------------------
 *
 * kafka_decode.h
 *		Turns Kafka messages into lines of COPY input for the target table.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_PIPELINE_KAFKA_DECODE_H
#define PG_PIPELINE_KAFKA_DECODE_H

#include "lib/stringinfo.h"

typedef enum KafkaFormat
{
	KAFKA_FORMAT_JSON,			/* fields into typed columns */
	KAFKA_FORMAT_JSONB,			/* whole (valid) JSON message into one column */
	KAFKA_FORMAT_TEXT,			/* whole message into one column */
	KAFKA_FORMAT_CSV,			/* one CSV record into columns */
	KAFKA_FORMAT_ACCESS_LOG		/* one web server access log line into columns */
} KafkaFormat;

/* How a metadata column is written: absent, or as which kind of value */
typedef enum KafkaKeyKind
{
	KAFKA_KEY_NONE,
	KAFKA_KEY_TEXT,
	KAFKA_KEY_BYTEA
} KafkaKeyKind;

typedef struct KafkaDecoder KafkaDecoder;

/* One Kafka header: a name, and bytes or NULL */
typedef struct KafkaHeader
{
	char	   *name;
	char	   *value;
	int			value_len;
} KafkaHeader;

/* One message, as copied out of librdkafka */
typedef struct KafkaMessage
{
	int32		partition;
	int64		offset;
	int64		timestamp_ms;	/* -1 if the message has none */
	char	   *key;			/* NULL if none */
	int			key_len;
	char	   *payload;		/* NULL for a tombstone */
	int			payload_len;
	int			nheaders;		/* -1 if the message has no headers */
	KafkaHeader *headers;
} KafkaMessage;

extern KafkaDecoder *KafkaDecoderCreate(KafkaFormat format, int ncolumns, char **paths,
										KafkaKeyKind key_kind, bool with_partition,
										bool with_offset, bool with_timestamp, bool with_headers);
extern bool KafkaDecode(KafkaDecoder *decoder, const KafkaMessage *msg, StringInfo out,
						char **error);
extern KafkaFormat KafkaFormatFromName(const char *name);

#endif							/* PG_PIPELINE_KAFKA_DECODE_H */
