/*-------------------------------------------------------------------------
 *
 * fraud_simulator.h
 *		Simulated card transactions with the Fraud Detection Handbook's model.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_PIPELINE_FRAUD_SIMULATOR_H
#define PG_PIPELINE_FRAUD_SIMULATOR_H

#include "fmgr.h"

extern Datum pipeline_simulate_transactions(PG_FUNCTION_ARGS);

#endif
