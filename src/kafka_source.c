/*-------------------------------------------------------------------------
 *
 * kafka_source.c
 *		A source worker: streams its share of a topic's partitions into the
 *		target table, exactly once.
 *
 * Delivery.  Offsets live in pipeline.kafka_offsets, never in Kafka.  The
 * worker assign()s its partitions at the committed offsets, reads a batch,
 * and in one transaction stores the rows, the dead letters and the new
 * offsets.  The offset UPDATE names the offset it expects, so a worker that
 * lost a race (a stale one after a restart) fails instead of committing.
 * Any other error aborts the batch and ends the worker; the supervisor
 * restarts it with backoff and it resumes from the committed offsets.
 *
 * Bad messages.  Messages the decoder rejects (invalid JSON, encoding) and
 * rows COPY rejects (conversion, constraints: SQLSTATE classes 22 and 23)
 * go to pipeline.kafka_dead_letters in the same transaction.  COPY runs in
 * a subtransaction; when it fails the batch is bisected until the bad rows
 * are isolated.  Other errors (privileges, resources) are never blamed on
 * a message: they fail the batch.
 *
 * Threads.  librdkafka runs its own threads; none of them calls into
 * Postgres.  Its consumer queue writes a byte to a pipe when it becomes
 * non-empty, and the worker waits on that pipe, its latch and postmaster
 * death in one WaitEventSet.  Logs and errors are delivered on the same
 * queue and handled by callbacks that run inside rd_kafka_consume_batch_
 * queue() on this thread; they only copy text.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <malloc.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/copy.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_node.h"
#include "parser/parse_relation.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/sinval.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "aggregate.h"
#include "catalog.h"
#include "copy_input.h"
#include "guc.h"
#include "kafka_decode.h"
#include "kafka_properties.h"
#include "kafka_source.h"
#include "shmem.h"

#define METADATA_TIMEOUT_MS 5000
#define BATCH_CONTEXT_SIZE (8 * 1024 * 1024)
#define RATE_WINDOW_SECONDS 60
#define PARTITION_CHECK_INTERVAL_MS 10000

typedef struct PartitionState
{
	int32		partition;
	int64		committed;		/* next offset, as committed */
	int64		batch_next;		/* next offset after this batch's messages */
	bool		in_batch;
	int64		batch_messages;
	int64		batch_bytes;
	/* committed messages and bytes per second of the last minute, by second % 60 */
	int64		rate_second[RATE_WINDOW_SECONDS];
	int64		rate_messages[RATE_WINDOW_SECONDS];
	int64		rate_bytes[RATE_WINDOW_SECONDS];
} PartitionState;

/* A message that could not be stored, and why */
typedef struct BadMessage
{
	int			msgno;
	char	   *error;
	char	   *sqlstate;
} BadMessage;

static KafkaWorkerArgs worker_args;
static KafkaSourceDef *source;
static KafkaDecoder *decoder;
static List *copy_columns;		/* target columns in COPY line order */
static Oid	staging_table = InvalidOid;	/* when rows are not stored */
static List *copy_options;

static rd_kafka_t *consumer;
static rd_kafka_queue_t *consumer_queue;

/*
 * The messages of the current consume call not yet handed on (NULL once
 * handed on): an exit meanwhile (a pause at an error message) destroys them,
 * since librdkafka's shutdown waits for every message the application holds.
 */
static rd_kafka_message_t **held_messages;
static ssize_t held_count;
static int	wake_pipe[2] = {-1, -1};
static WaitEventSet *wait_set;

static PartitionState *partitions;
static int	npartitions;
static PartitionState **partition_by_number;	/* topic partition -> ours, or NULL */
static int	topic_partitions;
static TimestampTz next_partition_check;	/* when to look for new partitions */

/* The current batch, in batch_context; per-message scratch in decode_context */
static MemoryContext batch_context;
static MemoryContext decode_context;
static KafkaMessage *batch;
static int	batch_count;
static StringInfoData batch_lines;
static int *line_start;			/* byte offset of each message's line, -1 if none */
static List *bad_messages;

/* Read cursor of the COPY data callback: it has no state argument in 15 */
static const char *copy_cursor;
static const char *copy_end;

/* Set by librdkafka callbacks, reported by the worker */
static char kafka_error[512];
static bool kafka_error_fatal;

static PipelineWorkerStats stats;
static bool failures_reset = false;	/* failed_batches cleared since start */
static uint64 rate_messages[RATE_WINDOW_SECONDS];
static uint64 rate_bytes[RATE_WINDOW_SECONDS];
static int64 rate_second[RATE_WINDOW_SECONDS];

/* Called on this thread, inside rd_kafka_consume_batch_queue() */
static void
KafkaErrorCallback(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	snprintf(kafka_error, sizeof(kafka_error), "%s: %s",
			 rd_kafka_err2name((rd_kafka_resp_err_t) err), reason);
	if (err == RD_KAFKA_RESP_ERR__FATAL)
		kafka_error_fatal = true;
}

static void
KafkaLogCallback(const rd_kafka_t *rk, int level, const char *facility, const char *message)
{
	/* librdkafka levels are syslog's: 0 emerg .. 7 debug */
	if (level <= 4)
		snprintf(kafka_error, sizeof(kafka_error), "%s: %s", facility, message);
}

static void
KafkaSourceShutdown(int code, Datum arg)
{
	for (ssize_t i = 0; i < held_count; i++)
	{
		if (held_messages[i])
			rd_kafka_message_destroy(held_messages[i]);
	}
	held_count = 0;
	if (consumer_queue)
		rd_kafka_queue_destroy(consumer_queue);
	if (consumer)
		rd_kafka_destroy_flags(consumer, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
	consumer_queue = NULL;
	consumer = NULL;
}

static void
SetConf(rd_kafka_conf_t *conf, const char *name, const char *value)
{
	char		errstr[512];

	if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid librdkafka property \"%s\" of kafka source \"%s\": %s",
						name, source->name, errstr),
				 errhint("Fix it in pipeline.kafka_source_properties, then resume the source.")));
}

static void
CreateConsumer(void)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char		errstr[512];
	char		group[128];
	ListCell   *name,
			   *value;

	/* a group.id is required by assign(); nothing is committed to it */
	snprintf(group, sizeof(group), "pg_pipeline-%u-" INT64_FORMAT, MyDatabaseId, source->id);
	SetConf(conf, "bootstrap.servers", source->brokers);
	SetConf(conf, "group.id", group);
	SetConf(conf, "client.id", "pg_pipeline");
	SetConf(conf, "enable.auto.commit", "false");
	SetConf(conf, "enable.auto.offset.store", "false");
	SetConf(conf, "auto.offset.reset", "error");
	SetConf(conf, "enable.partition.eof", "false");
	SetConf(conf, "fetch.wait.max.ms", "20");
	/*
	 * Prefetch is bounded by bytes only: the default message-count threshold
	 * made the fetcher pause for hundreds of milliseconds during catch-up.
	 */
	SetConf(conf, "queued.max.messages.kbytes", "65536");
	SetConf(conf, "queued.min.messages", "1000000");
	SetConf(conf, "fetch.error.backoff.ms", "20");
	SetConf(conf, "log.queue", "true");
	forboth(name, source->property_names, value, source->property_values)
	{
		PipelineCheckKafkaProperty(lfirst(name), psprintf("kafka source \"%s\"", source->name));
		SetConf(conf, lfirst(name), lfirst(value));
	}
	rd_kafka_conf_set_error_cb(conf, KafkaErrorCallback);
	rd_kafka_conf_set_log_cb(conf, KafkaLogCallback);

	consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	if (consumer == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not create Kafka consumer for source \"%s\": %s", source->name, errstr)));

	rd_kafka_poll_set_consumer(consumer);
	consumer_queue = rd_kafka_queue_get_consumer(consumer);
	rd_kafka_set_log_queue(consumer, consumer_queue);

	if (pipe2(wake_pipe, O_NONBLOCK | O_CLOEXEC) != 0)
		ereport(ERROR, (errcode_for_file_access(), errmsg("could not create pipe: %m")));
	rd_kafka_queue_io_event_enable(consumer_queue, wake_pipe[1], "1", 1);

	wait_set = CreateWaitEventSet(TopMemoryContext, 3);
	AddWaitEventToSet(wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(wait_set, WL_SOCKET_READABLE, wake_pipe[0], NULL, NULL);
}

/* Sleep until librdkafka has events, the latch is set, or timeout_ms passed */
static void
WaitForWork(long timeout_ms)
{
	WaitEvent	event;
	char		drain[64];

	(void) WaitEventSetWait(wait_set, timeout_ms, &event, 1, PG_WAIT_EXTENSION);
	while (read(wake_pipe[0], drain, sizeof(drain)) > 0)
		;
	ResetLatch(MyLatch);
	(void) PipelineProcessInterrupts();
}

/* Report a librdkafka error noticed by a callback, once */
static void
ReportKafkaError(void)
{
	if (kafka_error[0] == '\0')
		return;
	ereport(LOG,
			(errmsg("kafka source \"%s\": %s", source->name, kafka_error)));
	PipelineRecordSourceError(source->id, kafka_error, false, false);
	if (kafka_error_fatal)
		proc_exit(1);
	kafka_error[0] = '\0';
}

/* The number of partitions of the topic, or -1 (with kafka_error set) */
static int
TopicPartitionCount(int timeout_ms)
{
	rd_kafka_topic_t *topic = rd_kafka_topic_new(consumer, source->topic, NULL);
	const struct rd_kafka_metadata *md;
	rd_kafka_resp_err_t err = rd_kafka_metadata(consumer, 0, topic, &md, timeout_ms);
	int			count = -1;

	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		if (md->topic_cnt != 1)
			err = RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
		else if (md->topics[0].err)
			err = md->topics[0].err;
		else if (md->topics[0].partition_cnt > 0)
			count = md->topics[0].partition_cnt;
		else
			err = RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
		rd_kafka_metadata_destroy(md);
	}
	rd_kafka_topic_destroy(topic);
	if (count < 0)
		snprintf(kafka_error, sizeof(kafka_error), "cannot describe topic \"%s\": %s",
				 source->topic, rd_kafka_err2str(err));
	return count;
}

/* The partitions of the topic, retried until the topic can be described */
static int
DiscoverPartitionCount(void)
{
	for (;;)
	{
		int			count = TopicPartitionCount(METADATA_TIMEOUT_MS);

		if (count > 0)
			return count;
		ReportKafkaError();
		WaitForWork(METADATA_TIMEOUT_MS);
	}
}

/* First (earliest) or next (latest) offset of a partition, asked of the broker */
static int64
QueryWatermark(int32 partition, bool earliest)
{
	int64		low,
				high;
	rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(consumer, source->topic, partition,
															   &low, &high, METADATA_TIMEOUT_MS);

	if (err)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not read the offsets of partition %d of topic \"%s\": %s",
						partition, source->topic, rd_kafka_err2str(err))));
	return earliest ? low : high;
}

/* Offset to start a partition at that has no committed offset yet */
static int64
ResolveStartOffset(int32 partition)
{
	rd_kafka_resp_err_t err;

	if (strcmp(source->start_position, "earliest") == 0 ||
		strcmp(source->start_position, "latest") == 0)
		return QueryWatermark(partition, strcmp(source->start_position, "earliest") == 0);
	else
	{
		TimestampTz ts = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in,
																 CStringGetDatum(source->start_position),
																 ObjectIdGetDatum(InvalidOid),
																 Int32GetDatum(-1)));
		rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
		int64		offset;

		rd_kafka_topic_partition_list_add(list, source->topic, partition)->offset =
			(ts / 1000) + ((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000);
		err = rd_kafka_offsets_for_times(consumer, list, METADATA_TIMEOUT_MS);
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
			err = list->elems[0].err;
		offset = list->elems[0].offset;
		rd_kafka_topic_partition_list_destroy(list);
		if (err)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("could not find the offset at %s in partition %d of topic \"%s\": %s",
							source->start_position, partition, source->topic, rd_kafka_err2str(err))));
		/* no message that late yet: start at the end */
		return offset < 0 ? QueryWatermark(partition, false) : offset;
	}
}

/* Whether the source reads a partition: all of them, or those it lists */
static bool
SourceReadsPartition(int32 partition)
{
	if (source->nwanted_partitions == 0)
		return true;
	for (int i = 0; i < source->nwanted_partitions; i++)
	{
		if (source->wanted_partitions[i] == partition)
			return true;
	}
	return false;
}

/*
 * Load (or first store) the committed offsets of our share of the topic's
 * count partitions and assign them.  grown: the topic gained partitions
 * while the source ran, so new ones hold only messages to read.
 */
static void
AssignPartitions(int count, bool grown)
{
	bool		started = grown;
	rd_kafka_topic_partition_list_t *list;
	rd_kafka_resp_err_t err;

	if (partitions)
	{
		pfree(partitions);
		pfree(partition_by_number);
	}
	partitions = MemoryContextAllocZero(TopMemoryContext, sizeof(PartitionState) * count);
	partition_by_number = MemoryContextAllocZero(TopMemoryContext, sizeof(PartitionState *) * count);
	topic_partitions = count;
	npartitions = 0;
	for (int p = 0; p < count; p++)
	{
		if (p % source->parallelism == worker_args.worker_index && SourceReadsPartition(p))
		{
			partitions[npartitions].partition = p;
			partition_by_number[p] = &partitions[npartitions++];
		}
	}

	/* one transaction for all partitions: new ones get their start offset */
	PipelineSpiBegin();
	for (int i = 0; i < npartitions; i++)
	{
		PartitionState *ps = &partitions[i];

		ps->committed = -1;
		if (PipelineLoadKafkaOffset(source->id, ps->partition, &ps->committed))
			started = true;
	}
	for (int i = 0; i < npartitions; i++)
	{
		PartitionState *ps = &partitions[i];

		if (ps->committed >= 0)
			continue;

		/*
		 * The start position applies to a new source.  A partition added to
		 * the topic later is read from its beginning, or its first messages
		 * would be skipped.
		 */
		PipelineInitKafkaOffset(source->id, ps->partition,
								started ? QueryWatermark(ps->partition, true) :
								ResolveStartOffset(ps->partition));
		if (!PipelineLoadKafkaOffset(source->id, ps->partition, &ps->committed))
			elog(ERROR, "offset of partition %d vanished", ps->partition);
	}
	PipelineSpiCommit();

	list = rd_kafka_topic_partition_list_new(Max(npartitions, 1));
	for (int i = 0; i < npartitions; i++)
		rd_kafka_topic_partition_list_add(list, source->topic, partitions[i].partition)->offset =
			partitions[i].committed;
	err = rd_kafka_assign(consumer, list);
	rd_kafka_topic_partition_list_destroy(list);
	if (err)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not assign partitions of topic \"%s\": %s",
						source->topic, rd_kafka_err2str(err))));
	next_partition_check = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   PARTITION_CHECK_INTERVAL_MS);
}

/*
 * Between batches, now and then: take the partitions added to the topic.
 * Everything read so far is committed, so assigning all partitions afresh
 * at their committed offsets neither skips nor repeats a message.
 */
static void
CheckForNewPartitions(void)
{
	int			count;

	if (GetCurrentTimestamp() < next_partition_check)
		return;
	/* a short wait: the check must not hold up the stream when the broker is away */
	count = TopicPartitionCount(1000);
	kafka_error[0] = '\0';
	next_partition_check = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   PARTITION_CHECK_INTERVAL_MS);
	if (count <= topic_partitions)
		return;
	ereport(LOG,
			(errmsg("kafka source \"%s\": topic \"%s\" grew from %d to %d partitions",
					source->name, source->topic, topic_partitions, count)));
	AssignPartitions(count, true);
}

static PartitionState *
FindPartition(int32 partition)
{
	/* called per message: a direct lookup */
	if (partition < 0 || partition >= topic_partitions)
		return NULL;
	return partition_by_number[partition];
}

/* Build the decoder and the COPY column list from the definition */
static void
PrepareDecoder(void)
{
	KafkaKeyKind key_kind = KAFKA_KEY_NONE;
	MemoryContext old;

	StartTransactionCommand();
	old = MemoryContextSwitchTo(TopMemoryContext);

	for (int i = 0; i < source->ncolumns; i++)
		copy_columns = lappend(copy_columns, makeString(source->columns[i]));
	if (source->key_column)
	{
		key_kind = PipelineColumnType(source->target, source->key_column) == BYTEAOID ?
			KAFKA_KEY_BYTEA : KAFKA_KEY_TEXT;
		copy_columns = lappend(copy_columns, makeString(source->key_column));
	}
	if (source->partition_column)
		copy_columns = lappend(copy_columns, makeString(source->partition_column));
	if (source->offset_column)
		copy_columns = lappend(copy_columns, makeString(source->offset_column));
	if (source->timestamp_column)
		copy_columns = lappend(copy_columns, makeString(source->timestamp_column));
	if (source->headers_column)
		copy_columns = lappend(copy_columns, makeString(source->headers_column));

	/* the lines are in the database encoding, whatever the owner's client_encoding */
	copy_options = list_make1(makeDefElem("encoding",
										  (Node *) makeString(pstrdup(GetDatabaseEncodingName())), -1));
	if (strcmp(source->format, "csv") == 0)
		copy_options = lappend(copy_options, makeDefElem("format", (Node *) makeString("csv"), -1));

	decoder = KafkaDecoderCreate(KafkaFormatFromName(source->format), source->ncolumns,
								 source->paths, key_kind, source->partition_column != NULL,
								 source->offset_column != NULL, source->timestamp_column != NULL,
								 source->headers_column != NULL);
	MemoryContextSwitchTo(old);
	CommitTransactionCommand();
}

/* Copy a message's headers into the batch; nheaders is -1 if it has none */
static void
CopyHeaders(rd_kafka_message_t *rkm, KafkaMessage *msg)
{
	rd_kafka_headers_t *headers;
	const char *name;
	const void *value;
	size_t		size;

	msg->nheaders = -1;
	msg->headers = NULL;
	if (rd_kafka_message_headers(rkm, &headers) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return;
	msg->nheaders = (int) rd_kafka_header_cnt(headers);
	msg->headers = MemoryContextAlloc(batch_context, sizeof(KafkaHeader) * Max(msg->nheaders, 1));
	for (int i = 0; i < msg->nheaders &&
		 rd_kafka_header_get_all(headers, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; i++)
	{
		msg->headers[i].name = MemoryContextStrdup(batch_context, name);
		msg->headers[i].value = value ? MemoryContextAlloc(batch_context, size + 1) : NULL;
		msg->headers[i].value_len = (int) size;
		if (value)
			memcpy(msg->headers[i].value, value, size);
	}
}

/* Copy a message out of librdkafka into the batch, and free it there */
static void
AddToBatch(rd_kafka_message_t *rkm)
{
	KafkaMessage *msg = &batch[batch_count];
	PartitionState *ps = FindPartition(rkm->partition);
	rd_kafka_timestamp_type_t tstype;

	if (ps == NULL)
	{
		rd_kafka_message_destroy(rkm);
		return;
	}
	msg->partition = rkm->partition;
	msg->offset = rkm->offset;
	msg->timestamp_ms = rd_kafka_message_timestamp(rkm, &tstype);
	msg->key = rkm->key ? MemoryContextAlloc(batch_context, rkm->key_len + 1) : NULL;
	msg->key_len = rkm->key ? (int) rkm->key_len : 0;
	if (msg->key)
		memcpy(msg->key, rkm->key, rkm->key_len);
	msg->payload = rkm->payload ? MemoryContextAlloc(batch_context, rkm->len + 1) : NULL;
	msg->payload_len = rkm->payload ? (int) rkm->len : 0;
	if (msg->payload)
	{
		memcpy(msg->payload, rkm->payload, rkm->len);
		msg->payload[rkm->len] = '\0';
	}
	if (source->headers_column)
		CopyHeaders(rkm, msg);
	rd_kafka_message_destroy(rkm);

	/* offsets can have gaps (compaction, transaction markers) */
	ps->batch_next = msg->offset + 1;
	ps->in_batch = true;
	ps->batch_messages++;
	ps->batch_bytes += msg->payload_len + msg->key_len;
	stats.bytes += msg->payload_len + msg->key_len;
	batch_count++;
}

/* Stop the source for a human, with the reason in its status */
static void
PauseSourceAndExit(const char *reason)
{
	ereport(LOG, (errmsg("kafka source \"%s\": %s", source->name, reason)));
	PipelineRecordSourceError(source->id, reason, true, false);
	proc_exit(0);
}

/* A message-level error from librdkafka: never skip past it silently */
static void
HandleMessageError(rd_kafka_message_t *rkm)
{
	rd_kafka_resp_err_t err = rkm->err;
	int32		partition = rkm->partition;
	int64		offset = rkm->offset;
	char		reason[512];

	snprintf(reason, sizeof(reason), "%s", rd_kafka_message_errstr(rkm));
	rd_kafka_message_destroy(rkm);

	if (err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET ||
		err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE)
		PauseSourceAndExit(psprintf("offset " INT64_FORMAT " of partition %d is out of range (deleted by retention?): %s; "
									"the source is paused: move it with pipeline.reset_kafka_source, then resume it",
									offset, partition, reason));
	/*
	 * An error at a known offset (corrupt or undecodable message set) would
	 * be stepped over by the next message: stop instead of skipping it.
	 */
	if (offset >= 0 && FindPartition(partition) != NULL)
		PauseSourceAndExit(psprintf("cannot read offset " INT64_FORMAT " of partition %d: %s; "
									"the source is paused: skip it with pipeline.reset_kafka_source, then resume it",
									offset, partition, reason));
	snprintf(kafka_error, sizeof(kafka_error), "partition %d: %s", partition, reason);
	ReportKafkaError();
}

/* Fill the batch: up to batch_size messages or max_batch_latency_ms */
static void
ReadBatch(void)
{
	rd_kafka_message_t **msgs = palloc(sizeof(rd_kafka_message_t *) * source->batch_size);
	TimestampTz deadline = 0;

	batch_count = 0;
	for (;;)
	{
		ssize_t		n = rd_kafka_consume_batch_queue(consumer_queue, 0, msgs,
													 source->batch_size - batch_count);

		held_messages = msgs;
		held_count = Max(n, 0);
		ReportKafkaError();
		for (ssize_t i = 0; i < n; i++)
		{
			rd_kafka_message_t *rkm = msgs[i];

			msgs[i] = NULL;
			if (rkm->err)
				HandleMessageError(rkm);
			else
				AddToBatch(rkm);
		}
		held_count = 0;
		if (batch_count >= source->batch_size)
			break;
		if (batch_count > 0 && deadline == 0)
			deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												   source->max_batch_latency_ms);
		if (n > 0)
			continue;			/* the queue may hold more right now */
		if (deadline != 0)
		{
			long		remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);

			if (remaining <= 0)
				break;
			WaitForWork(remaining);
		}
		else
		{
			/* idle: come back for the partition check when it is due */
			long		remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
																	next_partition_check);

			if (remaining <= 0)
				break;
			WaitForWork(remaining);
		}
	}
	pfree(msgs);
}

static int
CopyReadCallback(void *outbuf, int minread, int maxread)
{
	int			n = Min(maxread, copy_end - copy_cursor);

	memcpy(outbuf, copy_cursor, n);
	copy_cursor += n;
	return n;
}

/* COPY the lines of messages [first, last) into the target */
static void
CopyMessages(Relation rel, int first, int last)
{
	int			from = -1;
	int			to = batch_lines.len;
	CopyFromState cstate;
	ParseState *pstate = make_parsestate(NULL);

	for (int i = first; i < last && from < 0; i++)
		from = line_start[i];
	if (from < 0)
		return;					/* every message of the range was rejected already */
	for (int i = last; i < batch_count; i++)
	{
		if (line_start[i] >= 0)
		{
			to = line_start[i];
			break;
		}
	}
	copy_cursor = batch_lines.data + from;
	copy_end = batch_lines.data + to;

	/* CopyFrom's executor state needs the target in the range table */
	addRangeTableEntryForRelation(pstate, rel, RowExclusiveLock, NULL, false, false);
	cstate = BeginCopyFrom(pstate, rel, NULL, NULL, false, CopyReadCallback,
						   copy_columns, copy_options);
	PipelineUseFastInput(cstate);
	(void) CopyFrom(cstate);
	EndCopyFrom(cstate);
	free_parsestate(pstate);
}

static bool
IsMessageError(int sqlerrcode)
{
	/*
	 * Data exceptions, integrity violations and limits a row exceeds (an
	 * index entry too large) are the message's fault.
	 */
	return ERRCODE_TO_CATEGORY(sqlerrcode) == ERRCODE_DATA_EXCEPTION ||
		ERRCODE_TO_CATEGORY(sqlerrcode) == ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION ||
		ERRCODE_TO_CATEGORY(sqlerrcode) == ERRCODE_PROGRAM_LIMIT_EXCEEDED;
}

/*
 * COPY messages [first, last) in a subtransaction; on a message error split
 * the range until single bad messages remain, and note those.
 */
static void
CopyWithBisect(Relation rel, int first, int last)
{
	MemoryContext context = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(context);
	PG_TRY();
	{
		CopyMessages(rel, first, last);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(context);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(context);
		edata = CopyErrorData();
		if (!IsMessageError(edata->sqlerrcode))
			PG_RE_THROW();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(context);
		CurrentResourceOwner = owner;

		if (last - first == 1)
		{
			BadMessage *bad = palloc(sizeof(BadMessage));

			bad->msgno = first;
			bad->error = edata->context ? psprintf("%s (%s)", edata->message, edata->context)
				: edata->message;
			bad->sqlstate = pstrdup(unpack_sql_state(edata->sqlerrcode));
			bad_messages = lappend(bad_messages, bad);
			line_start[first] = -1;
		}
		else
		{
			int			middle = first + (last - first) / 2;

			CopyWithBisect(rel, first, middle);
			CopyWithBisect(rel, middle, last);
		}
	}
	PG_END_TRY();
}

/* The target must still be writable by the owner, and without RLS */
static Relation
OpenTarget(void)
{
	Relation	rel = table_open(source->target, RowExclusiveLock);
	AclResult	acl = pg_class_aclcheck(source->target, GetUserId(), ACL_INSERT);

	if (acl != ACLCHECK_OK)
		aclcheck_error(acl, get_relkind_objtype(rel->rd_rel->relkind),
					   RelationGetRelationName(rel));
	if (check_enable_rls(source->target, InvalidOid, false) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("kafka source \"%s\" cannot write into table \"%s\", which has row-level security",
						source->name, RelationGetRelationName(rel)),
				 errhint("Disable row-level security on the table, or let the source write into another table.")));
	return rel;
}

/* Store the batch: rows, dead letters and offsets in one transaction */
static void
StoreBatch(void)
{
	Relation	rel;
	ListCell   *lc;
	bool		stop = strcmp(source->on_error, "stop") == 0;
	bool		keep = strcmp(source->on_error, "dead_letter") == 0;
	int64		now_second;

	PipelineSpiBegin();
	MemoryContextSwitchTo(batch_context);
	/* safe when off: the rows and their offsets are lost together, and re-read */
	SetConfigOption("synchronous_commit", pg_pipeline_source_synchronous_commit ? "on" : "off",
					PGC_SUSET, PGC_S_SESSION);

	bad_messages = NIL;
	initStringInfo(&batch_lines);
	line_start = palloc(sizeof(int) * Max(batch_count, 1));
	for (int i = 0; i < batch_count; i++)
	{
		char	   *error;
		bool		decoded;

		/* the JSON parser's allocations die with each message */
		line_start[i] = batch_lines.len;
		MemoryContextSwitchTo(decode_context);
		decoded = KafkaDecode(decoder, &batch[i], &batch_lines, &error);
		MemoryContextSwitchTo(batch_context);
		if (!decoded)
		{
			BadMessage *bad = palloc(sizeof(BadMessage));

			bad->msgno = i;
			bad->error = pstrdup(error);
			bad->sqlstate = NULL;
			bad_messages = lappend(bad_messages, bad);
			line_start[i] = -1;
		}
		MemoryContextReset(decode_context);
	}

	rel = OpenTarget();
	if (source->store_rows)
		CopyWithBisect(rel, 0, batch_count);
	else
	{
		/* the rows pass through a temporary table into the target's aggregates */
		Relation	staging = table_open(staging_table, RowExclusiveLock);

		CopyWithBisect(staging, 0, batch_count);
		PipelineFoldIntoAggregates(source->target, staging);
		table_close(staging, NoLock);
	}
	table_close(rel, NoLock);

	if (bad_messages != NIL && stop)
	{
		BadMessage *bad = linitial(bad_messages);

		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("kafka source \"%s\" stopped at partition %d offset " INT64_FORMAT ": %s",
						source->name, batch[bad->msgno].partition, batch[bad->msgno].offset,
						bad->error),
				 errhint("Fix or skip the message (pipeline.reset_kafka_source with explicit offsets), then resume the source.")));
	}
	foreach(lc, bad_messages)
	{
		BadMessage *bad = lfirst(lc);
		KafkaMessage *msg = &batch[bad->msgno];

		if (keep)
			PipelineInsertDeadLetter(source, msg->partition, msg->offset, msg->key, msg->key_len,
									 msg->payload, msg->payload_len, bad->error, bad->sqlstate);
	}

	/* the batch's second: its rate bucket, read into the minute sums and filled after the commit */
	now_second = (int64) (GetCurrentTimestamp() / USECS_PER_SEC);
	{
		int32	   *parts = palloc(sizeof(int32) * npartitions);
		int64	   *expected = palloc(sizeof(int64) * npartitions);
		int64	   *next = palloc(sizeof(int64) * npartitions);
		int64	   *high = palloc(sizeof(int64) * npartitions);
		int64	   *minute_messages = palloc(sizeof(int64) * npartitions);
		int64	   *minute_bytes = palloc(sizeof(int64) * npartitions);
		int			n = 0;

		for (int i = 0; i < npartitions; i++)
		{
			PartitionState *ps = &partitions[i];
			int64		low = -1;

			if (!ps->in_batch)
				continue;
			parts[n] = ps->partition;
			expected[n] = ps->committed;
			next[n] = ps->batch_next;
			high[n] = -1;
			(void) rd_kafka_get_watermark_offsets(consumer, source->topic, ps->partition,
												  &low, &high[n]);
			/* this batch counts only once it commits: a retried batch is not counted twice */
			minute_messages[n] = ps->batch_messages;
			minute_bytes[n] = ps->batch_bytes;
			for (int s = 0; s < RATE_WINDOW_SECONDS; s++)
			{
				if (ps->rate_second[s] > now_second - RATE_WINDOW_SECONDS)
				{
					minute_messages[n] += ps->rate_messages[s];
					minute_bytes[n] += ps->rate_bytes[s];
				}
			}
			n++;
		}
		PipelineAdvanceKafkaOffsets(source, n, parts, expected, next, high,
									minute_messages, minute_bytes);
	}
	if (!failures_reset)
		PipelineResetSourceFailures(source->id);

	PipelineSpiCommit();

	for (int i = 0; i < npartitions; i++)
	{
		PartitionState *ps = &partitions[i];

		if (ps->in_batch)
		{
			int			slot = now_second % RATE_WINDOW_SECONDS;

			ps->committed = ps->batch_next;
			if (ps->rate_second[slot] != now_second)
			{
				ps->rate_second[slot] = now_second;
				ps->rate_messages[slot] = 0;
				ps->rate_bytes[slot] = 0;
			}
			ps->rate_messages[slot] += ps->batch_messages;
			ps->rate_bytes[slot] += ps->batch_bytes;
		}
		ps->in_batch = false;
		ps->batch_messages = 0;
		ps->batch_bytes = 0;
	}
	failures_reset = true;
}

/*
 * After a committed batch: pause the source if too large a share of it was
 * bad.  Its good rows and dead letters are kept; the rest waits for a human.
 */
static void
CheckErrorRate(void)
{
	int			bad = list_length(bad_messages);

	if (source->max_error_rate < 0 || batch_count == 0 ||
		(double) bad / batch_count <= source->max_error_rate)
		return;
	PauseSourceAndExit(psprintf("paused: %d of %d messages in a batch were bad (%.1f %%), more than max_error_rate %.1f %%; "
								"see pipeline.kafka_dead_letters, then resume the source",
								bad, batch_count, 100.0 * bad / batch_count,
								100.0 * source->max_error_rate));
}

/* Messages and bytes per second over the last minute, for kafka_status */
static void
PublishStats(void)
{
	int64		now = (int64) (GetCurrentTimestamp() / USECS_PER_SEC);
	int			slot = now % RATE_WINDOW_SECONDS;
	int64		oldest_second = now;
	uint64		oldest_messages = stats.messages;
	uint64		oldest_bytes = stats.bytes;

	if (rate_second[slot] != now)
	{
		rate_second[slot] = now;
		rate_messages[slot] = stats.messages;
		rate_bytes[slot] = stats.bytes;
	}
	for (int i = 0; i < RATE_WINDOW_SECONDS; i++)
	{
		if (rate_second[i] != 0 && rate_second[i] > now - RATE_WINDOW_SECONDS &&
			rate_second[i] < oldest_second)
		{
			oldest_second = rate_second[i];
			oldest_messages = rate_messages[i];
			oldest_bytes = rate_bytes[i];
		}
	}
	if (now > oldest_second)
	{
		stats.messages_per_second = (double) (stats.messages - oldest_messages) / (now - oldest_second);
		stats.bytes_per_second = (double) (stats.bytes - oldest_bytes) / (now - oldest_second);
	}
	PipelineSlotSetStats(worker_args.slotno, &stats);
}

/*
 * A source that stores no rows COPYs each batch into a temporary copy of the
 * target (constraints included, so bad rows still become dead letters),
 * emptied at each commit, and folds it into the target's aggregates.
 */
static void
CreateStagingTable(void)
{
	Relation	target;
	char	   *sql;

	PipelineSpiBegin();
	target = table_open(source->target, AccessShareLock);
	sql = psprintf("CREATE TEMPORARY TABLE pg_pipeline_staging (LIKE %s INCLUDING DEFAULTS "
				   "INCLUDING CONSTRAINTS INCLUDING GENERATED) ON COMMIT DELETE ROWS",
				   quote_qualified_identifier(get_namespace_name(RelationGetNamespace(target)),
											  RelationGetRelationName(target)));
	table_close(target, AccessShareLock);
	if (SPI_execute(sql, false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "could not create the staging table");
	staging_table = RelnameGetRelid("pg_pipeline_staging");
	PipelineSpiCommit();
}

static void
LoadSource(void)
{
	PipelineSpiBegin();
	MemoryContextSwitchTo(TopMemoryContext);
	source = PipelineLoadKafkaSource(worker_args.source_id);
	PipelineSpiCommit();
	MemoryContextSwitchTo(TopMemoryContext);
}

void
PipelineKafkaSourceMain(Datum main_arg)
{
	memcpy(&worker_args, MyBgworkerEntry->bgw_extra, sizeof(KafkaWorkerArgs));

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	if (!PipelineSlotAttach(worker_args.slotno, PIPELINE_WORKER_KAFKA_SOURCE, worker_args.dboid))
		proc_exit(0);
	BackgroundWorkerInitializeConnectionByOid(worker_args.dboid, worker_args.owner, 0);
	pgstat_report_appname("pg_pipeline kafka source");

	LoadSource();
	if (source == NULL || !source->enabled)
		proc_exit(0);			/* dropped or paused meanwhile */

	before_shmem_exit(KafkaSourceShutdown, (Datum) 0);
	PG_TRY();
	{
		/* librdkafka's threads are created here, after signals are set up */
		CreateConsumer();
		PrepareDecoder();
		if (!source->store_rows)
			CreateStagingTable();
		AssignPartitions(DiscoverPartitionCount(), false);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(TopMemoryContext);
		edata = CopyErrorData();
		FlushErrorState();
		AbortOutOfAnyTransaction();
		PipelineRecordSourceError(source->id, edata->message, false, false);
		ReThrowError(edata);
	}
	PG_END_TRY();

	/*
	 * One large keeper block, reused by every batch: growing and freeing the
	 * context per batch made glibc map and unmap (and the kernel zero) fresh
	 * pages each time.  For the same reason transaction memory stays mapped.
	 */
	batch_context = AllocSetContextCreate(TopMemoryContext, "pg_pipeline kafka batch",
										  BATCH_CONTEXT_SIZE, BATCH_CONTEXT_SIZE,
										  BATCH_CONTEXT_SIZE);
	mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
	mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
	decode_context = AllocSetContextCreate(TopMemoryContext, "pg_pipeline kafka decode",
										   ALLOCSET_DEFAULT_SIZES);
	batch = MemoryContextAlloc(TopMemoryContext, sizeof(KafkaMessage) * source->batch_size);
	PipelineSlotSetState(worker_args.slotno, "streaming");
	pgstat_report_activity(STATE_RUNNING, NULL);

	for (;;)
	{
		MemoryContextSwitchTo(batch_context);
		ReadBatch();
		if (batch_count > 0)
		{
			PG_TRY();
			{
				StoreBatch();
			}
			PG_CATCH();
			{
				ErrorData  *edata;
				bool		pause;

				MemoryContextSwitchTo(TopMemoryContext);
				edata = CopyErrorData();
				FlushErrorState();
				AbortOutOfAnyTransaction();
				/* a bad message under on_error = stop pauses the source */
				pause = edata->sqlerrcode == ERRCODE_DATA_EXCEPTION &&
					strcmp(source->on_error, "stop") == 0;
				PipelineRecordSourceError(source->id, edata->message, pause, true);
				ReThrowError(edata);
			}
			PG_END_TRY();
			stats.messages += batch_count;
			PublishStats();
			CheckErrorRate();
		}
		MemoryContextReset(batch_context);
		CheckForNewPartitions();
	}
}
