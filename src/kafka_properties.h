/*-------------------------------------------------------------------------
 *
 * kafka_properties.h
 *		Which librdkafka properties a source or sink owner may set.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_PIPELINE_KAFKA_PROPERTIES_H
#define PG_PIPELINE_KAFKA_PROPERTIES_H

extern void PipelineCheckKafkaProperty(const char *name, const char *what);

#endif							/* PG_PIPELINE_KAFKA_PROPERTIES_H */
