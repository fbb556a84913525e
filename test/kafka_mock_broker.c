/*-------------------------------------------------------------------------
 *
 * kafka_mock_broker.c
 *		A Kafka test broker for pg_pipeline's tests and demo, on librdkafka's
 *		mock cluster (rdkafka_mock.h).
 *
 * It starts N brokers on loopback, creates the topics named on the command
 * line, writes the bootstrap address to a file and stays up until SIGTERM
 * or SIGINT.  Clients (kcat, our workers) reach it over TCP like a real
 * cluster.  Fault commands arrive one per line on a control FIFO, so that
 * reliability tests can take brokers down, slow them or inject protocol
 * errors; each command is answered on stdout with "ok <command>" or
 * "error <command>: <reason>".
 *
 * Limits of the mock cluster (librdkafka 2.0.2): about 5 MiB per partition
 * (older messages are dropped), plaintext only (no SASL/TLS), no
 * CreateTopics/DeleteRecords admin requests, read_committed sees aborted
 * messages, and the ports change on every start.
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define USAGE \
	"usage: kafka_mock_broker [-n BROKERS] [-b BOOTSTRAP_FILE] [-c CONTROL_FIFO] [TOPIC:PARTITIONS ...]\n" \
	"\n" \
	"Control commands (one per line on CONTROL_FIFO; BROKER -1 means all):\n" \
	"  topic NAME PARTITIONS        create a topic\n" \
	"  down BROKER | up BROKER      take brokers down or bring them back\n" \
	"  rtt BROKER MS                delay every response of a broker\n" \
	"  error APIKEY ERR [COUNT]     fail the next COUNT requests of APIKEY with ERR\n" \
	"  clear APIKEY                 drop pending injected errors of APIKEY\n" \
	"  topic-error TOPIC ERR        make metadata requests for TOPIC fail with ERR\n" \
	"  leader TOPIC PARTITION BROKER  move a partition's leader\n"

static int	signal_pipe[2] = {-1, -1};

static void
on_signal(int signo)
{
	int			saved_errno = errno;
	char		c = (char) signo;

	if (write(signal_pipe[1], &c, 1) < 0)
	{
		/* the pipe is full: a stop is already pending */
	}
	errno = saved_errno;
}

static int
create_topic(rd_kafka_mock_cluster_t *mcluster, const char *name, int partitions,
			 char *why, size_t whylen)
{
	rd_kafka_resp_err_t err;

	if (partitions < 1 || partitions > 10000)
	{
		snprintf(why, whylen, "partition count must be between 1 and 10000");
		return -1;
	}
	err = rd_kafka_mock_topic_create(mcluster, name, partitions, 1);
	if (err)
	{
		snprintf(why, whylen, "%s", rd_kafka_err2str(err));
		return -1;
	}
	return 0;
}

static int
parse_int(const char *s, long *out)
{
	char	   *end;

	if (s == NULL)
		return -1;
	errno = 0;
	*out = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || *out < INT_MIN || *out > INT_MAX)
		return -1;
	return 0;
}

/* Apply one control command; returns 0 or -1 with the reason in why */
static int
run_command(rd_kafka_mock_cluster_t *mcluster, char *line, char *why, size_t whylen)
{
	char	   *words[5] = {0};
	int			nwords = 0;
	long		a,
				b,
				c;
	char	   *save = NULL;

	for (char *w = strtok_r(line, " \t", &save); w != NULL; w = strtok_r(NULL, " \t", &save))
	{
		if (nwords == 5)
		{
			snprintf(why, whylen, "too many words");
			return -1;
		}
		words[nwords++] = w;
	}
	if (nwords == 0)
	{
		snprintf(why, whylen, "empty command");
		return -1;
	}

	if (strcmp(words[0], "topic") == 0 && nwords == 3 && parse_int(words[2], &a) == 0)
		return create_topic(mcluster, words[1], (int) a, why, whylen);
	if (strcmp(words[0], "down") == 0 && nwords == 2 && parse_int(words[1], &a) == 0)
		return rd_kafka_mock_broker_set_down(mcluster, (int32_t) a) ? -1 : 0;
	if (strcmp(words[0], "up") == 0 && nwords == 2 && parse_int(words[1], &a) == 0)
		return rd_kafka_mock_broker_set_up(mcluster, (int32_t) a) ? -1 : 0;
	if (strcmp(words[0], "rtt") == 0 && nwords == 3 &&
		parse_int(words[1], &a) == 0 && parse_int(words[2], &b) == 0)
		return rd_kafka_mock_broker_set_rtt(mcluster, (int32_t) a, (int) b) ? -1 : 0;
	if (strcmp(words[0], "error") == 0 && (nwords == 3 || nwords == 4) &&
		parse_int(words[1], &a) == 0 && parse_int(words[2], &b) == 0)
	{
		rd_kafka_resp_err_t errs[1000];

		c = 1;
		if (nwords == 4 && (parse_int(words[3], &c) != 0 || c < 1 || c > 1000))
		{
			snprintf(why, whylen, "COUNT must be between 1 and 1000");
			return -1;
		}
		for (long i = 0; i < c; i++)
			errs[i] = (rd_kafka_resp_err_t) b;
		rd_kafka_mock_push_request_errors_array(mcluster, (int16_t) a, (size_t) c, errs);
		return 0;
	}
	if (strcmp(words[0], "clear") == 0 && nwords == 2 && parse_int(words[1], &a) == 0)
	{
		rd_kafka_mock_clear_request_errors(mcluster, (int16_t) a);
		return 0;
	}
	if (strcmp(words[0], "topic-error") == 0 && nwords == 3 && parse_int(words[2], &a) == 0)
	{
		rd_kafka_mock_topic_set_error(mcluster, words[1], (rd_kafka_resp_err_t) a);
		return 0;
	}
	if (strcmp(words[0], "leader") == 0 && nwords == 4 &&
		parse_int(words[2], &a) == 0 && parse_int(words[3], &b) == 0)
		return rd_kafka_mock_partition_set_leader(mcluster, words[1], (int32_t) a,
												  (int32_t) b) ? -1 : 0;

	snprintf(why, whylen, "unknown command or bad arguments (see --help)");
	return -1;
}

/*
 * Run the complete lines in buf and keep the incomplete rest.  A line too
 * long for the buffer is refused, and skipped up to its newline.
 */
static void
run_lines(rd_kafka_mock_cluster_t *mcluster, char *buf, size_t *len, size_t cap)
{
	static int	discarding = 0;
	char	   *start = buf;
	char	   *nl;

	while ((nl = memchr(start, '\n', *len - (size_t) (start - buf))) != NULL)
	{
		if (discarding)
		{
			discarding = 0;
			start = nl + 1;
			continue;
		}
		char	   *command;
		char		why[256] = "failed";

		*nl = '\0';
		command = strdup(start);
		if (run_command(mcluster, start, why, sizeof(why)) == 0)
			printf("ok %s\n", command);
		else
			printf("error %s: %s\n", command, why);
		fflush(stdout);
		free(command);
		start = nl + 1;
	}
	*len -= (size_t) (start - buf);
	memmove(buf, start, *len);
	if (*len == cap)
	{
		if (!discarding)
		{
			printf("error (line too long): longer than %zu bytes\n", cap);
			fflush(stdout);
		}
		discarding = 1;
		*len = 0;
	}
}

static int
write_file_atomically(const char *path, const char *text)
{
	char		tmp[PATH_MAX];
	FILE	   *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (f == NULL)
		return -1;
	fprintf(f, "%s\n", text);
	if (fclose(f) != 0)
		return -1;
	return rename(tmp, path);
}

int
main(int argc, char **argv)
{
	int			brokers = 1;
	const char *bootstrap_file = NULL;
	const char *control_fifo = NULL;
	int			control_fd = -1;
	char		errstr[512];
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;
	rd_kafka_mock_cluster_t *mcluster;
	const char *bootstraps;
	char		buf[8192];
	size_t		buflen = 0;
	int			opt;

	if (argc > 1 && strcmp(argv[1], "--help") == 0)
	{
		fputs(USAGE, stdout);
		return 0;
	}
	while ((opt = getopt(argc, argv, "n:b:c:")) != -1)
	{
		switch (opt)
		{
			case 'n':
				brokers = atoi(optarg);
				break;
			case 'b':
				bootstrap_file = optarg;
				break;
			case 'c':
				control_fifo = optarg;
				break;
			default:
				fputs(USAGE, stderr);
				return 2;
		}
	}
	if (brokers < 1 || brokers > 16)
	{
		fprintf(stderr, "kafka_mock_broker: broker count must be between 1 and 16\n");
		return 2;
	}

	if (pipe2(signal_pipe, O_NONBLOCK | O_CLOEXEC) != 0)
	{
		perror("kafka_mock_broker: pipe");
		return 1;
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGPIPE, SIG_IGN);

	conf = rd_kafka_conf_new();
	if (rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
	{
		fprintf(stderr, "kafka_mock_broker: %s\n", errstr);
		return 1;
	}
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (rk == NULL)
	{
		fprintf(stderr, "kafka_mock_broker: %s\n", errstr);
		return 1;
	}
	mcluster = rd_kafka_mock_cluster_new(rk, brokers);
	if (mcluster == NULL)
	{
		fprintf(stderr, "kafka_mock_broker: could not create the mock cluster\n");
		return 1;
	}

	for (int i = optind; i < argc; i++)
	{
		char		name[512];
		char	   *colon;
		long		partitions = 1;

		snprintf(name, sizeof(name), "%s", argv[i]);
		colon = strrchr(name, ':');
		if (colon != NULL)
		{
			*colon = '\0';
			if (parse_int(colon + 1, &partitions) != 0)
			{
				fprintf(stderr, "kafka_mock_broker: bad topic \"%s\": expected NAME:PARTITIONS\n", argv[i]);
				return 2;
			}
		}
		if (create_topic(mcluster, name, (int) partitions, errstr, sizeof(errstr)) != 0)
		{
			fprintf(stderr, "kafka_mock_broker: topic \"%s\": %s\n", name, errstr);
			return 1;
		}
	}

	if (control_fifo != NULL)
	{
		if (mkfifo(control_fifo, 0600) != 0 && errno != EEXIST)
		{
			perror("kafka_mock_broker: mkfifo");
			return 1;
		}
		/* read-write, so that writers coming and going never give us EOF */
		control_fd = open(control_fifo, O_RDWR | O_NONBLOCK);
		if (control_fd < 0)
		{
			perror("kafka_mock_broker: open control fifo");
			return 1;
		}
	}

	bootstraps = rd_kafka_mock_cluster_bootstraps(mcluster);
	if (bootstrap_file != NULL && write_file_atomically(bootstrap_file, bootstraps) != 0)
	{
		perror("kafka_mock_broker: writing bootstrap file");
		return 1;
	}
	printf("bootstrap %s\n", bootstraps);
	fflush(stdout);

	for (;;)
	{
		struct pollfd fds[2] = {
			{.fd = signal_pipe[0],.events = POLLIN},
			{.fd = control_fd,.events = POLLIN},
		};

		if (poll(fds, control_fd >= 0 ? 2 : 1, -1) < 0)
		{
			if (errno == EINTR)
				continue;
			perror("kafka_mock_broker: poll");
			break;
		}
		if (fds[0].revents)
			break;
		if (control_fd >= 0 && (fds[1].revents & POLLIN))
		{
			ssize_t		n = read(control_fd, buf + buflen, sizeof(buf) - 1 - buflen);

			if (n > 0)
			{
				buflen += (size_t) n;
				run_lines(mcluster, buf, &buflen, sizeof(buf) - 1);
			}
		}
	}

	rd_kafka_mock_cluster_destroy(mcluster);
	rd_kafka_destroy(rk);
	if (control_fifo != NULL)
		unlink(control_fifo);
	if (bootstrap_file != NULL)
		unlink(bootstrap_file);
	return 0;
}
