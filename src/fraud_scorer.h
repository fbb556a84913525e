/*-------------------------------------------------------------------------
 *
 * fraud_scorer.h
 *		Fraud scoring of card transactions as they are inserted.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_PIPELINE_FRAUD_SCORER_H
#define PG_PIPELINE_FRAUD_SCORER_H

#include "fmgr.h"

/* the model's features; their names are in fraud_feature_names */
#define FRAUD_NFEATURES 20

extern const char *const fraud_feature_names[FRAUD_NFEATURES];

extern Datum pipeline_fraud_score_trigger(PG_FUNCTION_ARGS);
extern Datum pipeline_fraud_label_trigger(PG_FUNCTION_ARGS);
extern Datum pipeline_fraud_feature_names(PG_FUNCTION_ARGS);
extern Datum pipeline_fraud_state_bytes(PG_FUNCTION_ARGS);

#endif
