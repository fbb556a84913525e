/*-------------------------------------------------------------------------
 *
 * fraud_model.h
 *		Training a fraud scorer's logistic model inside the database.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_PIPELINE_FRAUD_MODEL_H
#define PG_PIPELINE_FRAUD_MODEL_H

#include "fmgr.h"

extern Datum pipeline_fraud_fit_logistic(PG_FUNCTION_ARGS);

#endif
