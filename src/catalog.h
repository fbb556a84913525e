/*-------------------------------------------------------------------------
 *
 * catalog.h
 *		Reading and writing pg_pipeline's catalog tables through SPI.
 *
 * Every function here must run inside a transaction with SPI connected
 * (PipelineSpiBegin), unless its comment says it manages the transaction
 * itself.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_PIPELINE_CATALOG_H
#define PG_PIPELINE_CATALOG_H

#include "nodes/pg_list.h"

typedef struct KafkaSourceDef
{
	int64		id;
	char	   *name;
	Oid			owner;
	char	   *brokers;
	char	   *topic;
	Oid			target;
	char	   *format;
	int			ncolumns;
	char	  **columns;
	char	  **paths;
	char	   *key_column;		/* NULL if not wanted */
	char	   *partition_column;
	char	   *offset_column;
	char	   *timestamp_column;
	char	   *headers_column;
	char	   *start_position;
	int			batch_size;
	int			max_batch_latency_ms;
	int			parallelism;
	char	   *on_error;
	double		max_error_rate; /* negative if unlimited */
	int			nwanted_partitions; /* 0: every partition of the topic */
	int32	   *wanted_partitions;
	bool		enabled;
	bool		store_rows;		/* false: rows only feed the target's aggregates */
	List	   *property_names;
	List	   *property_values;
} KafkaSourceDef;

/* A source as the supervisor sees it: which workers it needs */
typedef struct KafkaSourceWorkers
{
	int64		id;
	Oid			owner;
	int			parallelism;
	int64		generation;
} KafkaSourceWorkers;

extern void PipelineSpiBegin(void);
extern void PipelineSpiCommit(void);
extern void PipelineSplitTextArray(Datum array, int *n, char ***out);
extern Oid	PipelineCatalogOwner(const char *table, int64 id);
extern KafkaSourceDef *PipelineLoadKafkaSource(int64 source_id);
extern List *PipelineLoadEnabledKafkaSources(void);
extern bool PipelineLoadKafkaOffset(int64 source_id, int32 partition, int64 *next_offset);
extern void PipelineInitKafkaOffset(int64 source_id, int32 partition, int64 next_offset);
extern void PipelineAdvanceKafkaOffsets(KafkaSourceDef *source, int n, const int32 *partitions,
										const int64 *expected, const int64 *next,
										const int64 *high, const int64 *minute_messages,
										const int64 *minute_bytes);
extern void PipelineInsertDeadLetter(KafkaSourceDef *source, int32 partition, int64 offset,
									 const char *key, int key_len,
									 const char *payload, int payload_len,
									 const char *error, const char *sqlstate);
/* failed batches in a row after which a source is paused */
#define PIPELINE_MAX_FAILED_BATCHES 10

extern void PipelineRecordSourceError(int64 source_id, const char *error, bool pause,
									  bool failed_batch);
extern void PipelineResetSourceFailures(int64 source_id);
extern Oid	PipelineColumnType(Oid relid, const char *column);
extern int	PipelineEnterOwner(Oid owner, Oid *save_userid, int *save_sec_context);
extern void PipelineLeaveOwner(int nestlevel, Oid save_userid, int save_sec_context);
extern char *PipelineQualifiedTable(Oid relid, const char *object, const char *drop_hint);

#endif							/* PG_PIPELINE_CATALOG_H */
