/*-------------------------------------------------------------------------
 *
 * kafka_sink.c
 *		Produce the committed rows of a table to a Kafka topic.
 *
 * A sink follows a table by an increasing column (fraud alerts by their
 * identity, say).  pipeline.run_kafka_sink reads the rows after the
 * position it last recorded, produces each as a JSON object, waits until
 * the broker has acknowledged every one, and only then records the new
 * position, in the caller's transaction.  A row is produced only once it is
 * committed, since the sink reads what its snapshot sees; a crash after the
 * acknowledgement and before the commit sends the last rows again, so
 * delivery is at least once and each message carries its position in the
 * header pg_pipeline.position for consumers that must drop repeats.
 *
 * Rows must be committed in the order of the position column, as rows
 * numbered under a lock are (a fraud scorer writes its alerts under its
 * own): a row committed after one with a higher position would be skipped.
 *
 * Everything librdkafka calls back (delivery reports, errors, logs) is
 * served by rd_kafka_poll and rd_kafka_flush in this backend's thread, and
 * only copies into static buffers.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <librdkafka/rdkafka.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "kafka_properties.h"
#include "kafka_sink.h"

PG_FUNCTION_INFO_V1(pipeline_run_kafka_sink);

#define POSITION_HEADER "pg_pipeline.position"

typedef struct Delivery
{
	int64		acknowledged;
	int64		failed;
	char		first_error[256];
} Delivery;

static Delivery delivery;
static char client_error[256];

static void
DeliveryReport(rd_kafka_t *rk, const rd_kafka_message_t *message, void *opaque)
{
	if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR)
		delivery.acknowledged++;
	else if (delivery.failed++ == 0)
		strlcpy(delivery.first_error, rd_kafka_err2str(message->err), sizeof(delivery.first_error));
}

static void
ClientError(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	snprintf(client_error, sizeof(client_error), "%s: %s", rd_kafka_err2name((rd_kafka_resp_err_t) err), reason);
}

static void
ClientLog(const rd_kafka_t *rk, int level, const char *facility, const char *message)
{
	/* librdkafka levels are syslog's: 0 emerg .. 7 debug */
	if (level <= 4)
		snprintf(client_error, sizeof(client_error), "%s: %s", facility, message);
}

static void
SetProperty(rd_kafka_conf_t *conf, const char *sink, const char *name, const char *value)
{
	char		errstr[512];

	if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
	{
		rd_kafka_conf_destroy(conf);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("kafka sink \"%s\" has an invalid librdkafka property \"%s\": %s", sink, name, errstr),
				 errhint("Drop the sink and create it again with valid kafka_properties.")));
	}
}

/* A producer for the sink's brokers, with its kafka_properties over our defaults */
static rd_kafka_t *
CreateProducer(const char *sink, const char *brokers, SPITupleTable *properties, uint64 nproperties)
{
	rd_kafka_conf_t *conf;
	rd_kafka_t *producer;
	char		errstr[512];

	for (uint64 i = 0; i < nproperties; i++)
		PipelineCheckKafkaProperty(SPI_getvalue(properties->vals[i], properties->tupdesc, 1),
								   psprintf("kafka sink \"%s\"", sink));
	conf = rd_kafka_conf_new();
	SetProperty(conf, sink, "bootstrap.servers", brokers);
	SetProperty(conf, sink, "client.id", "pg_pipeline");
	/* retries keep each partition in order and without repeats */
	SetProperty(conf, sink, "enable.idempotence", "true");
	SetProperty(conf, sink, "linger.ms", "5");
	/* a run fails after this, rather than hanging while the brokers are away */
	SetProperty(conf, sink, "message.timeout.ms", "10000");
	/* logs are served by rd_kafka_poll in this thread, not by librdkafka's */
	SetProperty(conf, sink, "log.queue", "true");
	for (uint64 i = 0; i < nproperties; i++)
		SetProperty(conf, sink, SPI_getvalue(properties->vals[i], properties->tupdesc, 1),
					SPI_getvalue(properties->vals[i], properties->tupdesc, 2));
	rd_kafka_conf_set_dr_msg_cb(conf, DeliveryReport);
	rd_kafka_conf_set_error_cb(conf, ClientError);
	rd_kafka_conf_set_log_cb(conf, ClientLog);
	producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (producer == NULL)
	{
		rd_kafka_conf_destroy(conf);	/* still ours when rd_kafka_new fails */
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not create a Kafka producer for sink \"%s\": %s", sink, errstr)));
	}
	rd_kafka_set_log_queue(producer, NULL);
	return producer;
}

/* Produce the rows (JSON, position, key) and wait for every acknowledgement */
static void
ProduceRows(rd_kafka_t *producer, const char *sink, const char *topic, SPITupleTable *rows, uint64 n)
{
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;
		char	   *value = SPI_getvalue(rows->vals[i], rows->tupdesc, 1);
		int64		position = DatumGetInt64(SPI_getbinval(rows->vals[i], rows->tupdesc, 2, &isnull));
		char	   *key = SPI_getvalue(rows->vals[i], rows->tupdesc, 3);
		char		position_text[32];
		rd_kafka_resp_err_t err;

		snprintf(position_text, sizeof(position_text), INT64_FORMAT, position);
		for (;;)
		{
			CHECK_FOR_INTERRUPTS();
			err = rd_kafka_producev(producer,
									RD_KAFKA_V_TOPIC(topic),
									RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
									RD_KAFKA_V_VALUE(value, strlen(value)),
									RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
									RD_KAFKA_V_HEADER(POSITION_HEADER, position_text, (ssize_t) strlen(position_text)),
									RD_KAFKA_V_END);
			if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
				break;
			rd_kafka_poll(producer, 100);
		}
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("kafka sink \"%s\" could not produce to topic \"%s\": %s", sink, topic,
							rd_kafka_err2str(err)),
					 errhint("Nothing was recorded as produced: the next run sends these rows again.")));
		rd_kafka_poll(producer, 0);
	}
	/* message.timeout.ms bounds the wait: every message is acknowledged or failed by then */
	while (rd_kafka_outq_len(producer) > 0)
	{
		CHECK_FOR_INTERRUPTS();
		(void) rd_kafka_flush(producer, 100);
	}
	if (delivery.failed > 0 || delivery.acknowledged < (int64) n)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("kafka sink \"%s\" could not produce " INT64_FORMAT " of " UINT64_FORMAT " rows to topic \"%s\": %s",
						sink, (int64) n - delivery.acknowledged, n, topic,
						delivery.first_error[0] ? delivery.first_error : client_error),
				 errhint("Nothing was recorded as produced: the next run sends these rows again "
						  "(consumers can drop repeats by the header " POSITION_HEADER ").")));
}

/*
 * pipeline.run_kafka_sink(name): produce the rows after the sink's position
 * (up to its batch size) and record the new position; returns how many.
 */
Datum
pipeline_run_kafka_sink(PG_FUNCTION_ARGS)
{
	Oid			argtypes[2] = {TEXTOID, INT8OID};
	Datum		args[3];
	int64		sink_id;
	char	   *sink;
	Oid			source;
	char	   *relname;
	char	   *position_column;
	char	   *key_column;
	char	   *brokers;
	char	   *topic;
	int32		batch_size;
	int64		position;
	bool		isnull;
	HeapTuple	tuple;
	TupleDesc	desc;
	SPITupleTable *rows;
	uint64		n;
	SPITupleTable *properties;
	uint64		nproperties;
	rd_kafka_t *volatile producer = NULL;

	SPI_connect();
	/* as the caller: the catalog's row security shows only their sinks; runs queue on the row */
	args[0] = PG_GETARG_DATUM(0);
	if (SPI_execute_with_args("SELECT id, name, source::pg_catalog.oid, position_column, key_column, brokers, topic, "
							  "batch_size, produced_position FROM pipeline.kafka_sinks "
							  "WHERE name OPERATOR(pg_catalog.=) $1 FOR UPDATE",
							  1, argtypes, args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read pipeline.kafka_sinks");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("kafka sink \"%s\" does not exist", TextDatumGetCString(args[0])),
				 errhint("SELECT name FROM pipeline.kafka_sink_status lists the sinks you own.")));
	tuple = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	sink_id = DatumGetInt64(SPI_getbinval(tuple, desc, 1, &isnull));
	sink = SPI_getvalue(tuple, desc, 2);
	source = DatumGetObjectId(SPI_getbinval(tuple, desc, 3, &isnull));
	position_column = SPI_getvalue(tuple, desc, 4);
	key_column = SPI_getvalue(tuple, desc, 5);
	brokers = SPI_getvalue(tuple, desc, 6);
	topic = SPI_getvalue(tuple, desc, 7);
	batch_size = DatumGetInt32(SPI_getbinval(tuple, desc, 8, &isnull));
	position = DatumGetInt64(SPI_getbinval(tuple, desc, 9, &isnull));

	relname = get_rel_name(source);
	if (relname == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("the table of kafka sink \"%s\" was dropped", sink),
				 errhint("Drop the sink with pipeline.drop_kafka_sink.")));

	/* the rows it has not produced, as the caller reads them */
	args[0] = Int64GetDatum(position);
	args[1] = Int64GetDatum(batch_size);
	argtypes[0] = INT8OID;
	if (SPI_execute_with_args(psprintf("SELECT pg_catalog.to_jsonb(t.*)::pg_catalog.text, t.%s::pg_catalog.int8, "
									   "%s FROM %s t WHERE t.%s OPERATOR(pg_catalog.>) $1 "
									   "ORDER BY t.%s LIMIT $2",
									   quote_identifier(position_column),
									   key_column ? psprintf("t.%s::pg_catalog.text", quote_identifier(key_column)) : "NULL",
									   quote_qualified_identifier(get_namespace_name(get_rel_namespace(source)), relname),
									   quote_identifier(position_column), quote_identifier(position_column)),
							  2, argtypes, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the table of kafka sink \"%s\"", sink);
	rows = SPI_tuptable;
	n = SPI_processed;
	if (n == 0)
	{
		SPI_finish();
		PG_RETURN_INT64(0);
	}

	args[0] = Int64GetDatum(sink_id);
	if (SPI_execute_with_args("SELECT p.key, p.value FROM pipeline.kafka_sinks s, "
							  "pg_catalog.jsonb_each_text(s.kafka_properties) p WHERE s.id OPERATOR(pg_catalog.=) $1",
							  1, argtypes, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read pipeline.kafka_sinks");
	properties = SPI_tuptable;
	nproperties = SPI_processed;

	/* recorded first: a role that may not record it learns so before anything is sent */
	args[0] = Int64GetDatum(sink_id);
	args[1] = SPI_getbinval(rows->vals[n - 1], rows->tupdesc, 2, &isnull);
	args[2] = Int64GetDatum((int64) n);
	{
		Oid			update_types[3] = {INT8OID, INT8OID, INT8OID};

		if (SPI_execute_with_args("UPDATE pipeline.kafka_sinks SET produced_position = $2, "
								  "produced_rows = produced_rows OPERATOR(pg_catalog.+) $3, "
								  "last_run_at = pg_catalog.now() WHERE id OPERATOR(pg_catalog.=) $1",
								  3, update_types, args, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not write pipeline.kafka_sinks");
	}
	memset(&delivery, 0, sizeof(delivery));
	client_error[0] = '\0';
	PG_TRY();
	{
		producer = CreateProducer(sink, brokers, properties, nproperties);
		ProduceRows(producer, sink, topic, rows, n);
	}
	PG_FINALLY();
	{
		if (producer)
		{
			/* on an error, what is still queued is dropped: nothing is recorded */
			rd_kafka_purge(producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
			rd_kafka_destroy(producer);
		}
	}
	PG_END_TRY();

	SPI_finish();
	PG_RETURN_INT64((int64) n);
}
