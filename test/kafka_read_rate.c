/*-------------------------------------------------------------------------
 *
 * kafka_read_rate.c
 *		How fast a bare librdkafka consumer reads a topic: the transport's
 *		ceiling, printed beside what the source workers reach in bench/.
 *
 * usage: kafka_read_rate BOOTSTRAP TOPIC PARTITIONS MESSAGES
 *
 * It reads every partition from the beginning with the fetch settings of
 * pg_pipeline's Kafka source (src/kafka_source.c), does nothing with the
 * messages, and prints "<messages> messages in <s> s: <rate> msg/s".
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

static double
Seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
Set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
	char		error[512];

	if (rd_kafka_conf_set(conf, name, value, error, sizeof(error)) != RD_KAFKA_CONF_OK)
	{
		fprintf(stderr, "kafka_read_rate: %s\n", error);
		exit(1);
	}
}

int
main(int argc, char **argv)
{
	rd_kafka_conf_t *conf;
	rd_kafka_t *consumer;
	rd_kafka_topic_partition_list_t *partitions;
	rd_kafka_queue_t *queue;
	rd_kafka_message_t *batch[10000];
	char		error[512];
	long		wanted,
				read = 0;
	int			npartitions;
	double		start;

	if (argc != 5)
	{
		fprintf(stderr, "usage: kafka_read_rate BOOTSTRAP TOPIC PARTITIONS MESSAGES\n");
		return 2;
	}
	npartitions = atoi(argv[3]);
	wanted = atol(argv[4]);
	conf = rd_kafka_conf_new();
	Set(conf, "bootstrap.servers", argv[1]);
	Set(conf, "group.id", "kafka_read_rate");
	Set(conf, "enable.auto.commit", "false");
	Set(conf, "fetch.wait.max.ms", "20");
	Set(conf, "queued.max.messages.kbytes", "65536");
	Set(conf, "queued.min.messages", "1000000");
	consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, error, sizeof(error));
	if (consumer == NULL)
	{
		fprintf(stderr, "kafka_read_rate: %s\n", error);
		return 1;
	}
	rd_kafka_poll_set_consumer(consumer);
	partitions = rd_kafka_topic_partition_list_new(npartitions);
	for (int p = 0; p < npartitions; p++)
		rd_kafka_topic_partition_list_add(partitions, argv[2], p)->offset = RD_KAFKA_OFFSET_BEGINNING;
	rd_kafka_assign(consumer, partitions);
	queue = rd_kafka_queue_get_consumer(consumer);
	start = Seconds();
	while (read < wanted)
	{
		ssize_t		n = rd_kafka_consume_batch_queue(queue, 1000, batch, 10000);

		for (ssize_t i = 0; i < n; i++)
		{
			if (batch[i]->err == RD_KAFKA_RESP_ERR_NO_ERROR)
				read++;
			rd_kafka_message_destroy(batch[i]);
		}
		if (Seconds() - start > 600)
			break;
	}
	printf("%ld messages in %.2f s: %.0f msg/s\n", read, Seconds() - start, read / (Seconds() - start));
	rd_kafka_queue_destroy(queue);
	rd_kafka_topic_partition_list_destroy(partitions);
	rd_kafka_consumer_close(consumer);
	rd_kafka_destroy(consumer);
	return read < wanted;
}
