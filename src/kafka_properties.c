/*-------------------------------------------------------------------------
 *
 * kafka_properties.c
 *		Which librdkafka properties a source or sink owner may set.
 *
 * Owners give librdkafka properties (SASL and TLS settings, tuning), and
 * librdkafka runs in the server's backend as the server's OS user.  Some
 * properties load code (plugin.library.paths, ssl.engine.location,
 * ssl.providers), run a command (sasl.kerberos.kinit.cmd) or read a file of
 * the server (*.location): only a superuser may set those; the inline
 * variants (ssl.ca.pem, ssl.key.pem, ssl.certificate.pem) serve everyone
 * else.  log.queue is ours: without it librdkafka would call our log
 * callback from its own threads.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"

#include "kafka_properties.h"

static bool
EndsWith(const char *s, const char *suffix)
{
	size_t		n = strlen(s),
				m = strlen(suffix);

	return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Refuse a property the current user may not set; what names the source or sink */
void
PipelineCheckKafkaProperty(const char *name, const char *what)
{
	if (strcmp(name, "log.queue") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("librdkafka property \"%s\" of %s cannot be set", name, what),
				 errhint("pg_pipeline sets log.queue itself: remove it from the properties.")));
	if (!superuser() &&
		(strcmp(name, "plugin.library.paths") == 0 || strcmp(name, "sasl.kerberos.kinit.cmd") == 0 ||
		 strcmp(name, "ssl.providers") == 0 || strncmp(name, "ssl.engine.", 11) == 0 ||
		 strcmp(name, "ssl_engine_id") == 0 || EndsWith(name, ".location") || EndsWith(name, ".paths")))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("only a superuser may set librdkafka property \"%s\" of %s", name, what),
				 errhint("It loads code, runs a command or reads a file of the server; give certificates "
						 "and keys inline with ssl.ca.pem, ssl.certificate.pem and ssl.key.pem.")));
}
