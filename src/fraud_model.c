/*-------------------------------------------------------------------------
 *
 * fraud_model.c
 *		Training a fraud scorer's logistic model inside the database.
 *
 * Newton's method (iteratively reweighted least squares) on the log-loss
 * plus an L2 penalty |w|^2 / (2C) that spares the intercept, the objective
 * scikit-learn's LogisticRegression minimises: each step is one pass over
 * the standardised rows for the gradient and the Hessian, then a Cholesky
 * solve of a (features + 1)-square system.  About ten steps reach the
 * optimum to many digits, where gradient descent needs thousands.
 * Standardisation uses the training rows' mean and population standard
 * deviation, and is stored with the weights.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "fraud_model.h"
#include "fraud_scorer.h"

PG_FUNCTION_INFO_V1(pipeline_fraud_fit_logistic);

#define NPARAMS (FRAUD_NFEATURES + 1)	/* the intercept first */
#define CONVERGED_STEP 1e-8

/* Solve a x = b for a symmetric positive definite a (overwritten) */
static bool
CholeskySolve(double a[NPARAMS][NPARAMS], double *b, double *x)
{
	double		y[NPARAMS];

	for (int j = 0; j < NPARAMS; j++)
	{
		double		d = a[j][j];

		for (int k = 0; k < j; k++)
			d -= a[j][k] * a[j][k];
		if (!(d > 0))			/* NaN too */
			return false;
		a[j][j] = sqrt(d);
		for (int i = j + 1; i < NPARAMS; i++)
		{
			double		s = a[i][j];

			for (int k = 0; k < j; k++)
				s -= a[i][k] * a[j][k];
			a[i][j] = s / a[j][j];
		}
	}
	for (int i = 0; i < NPARAMS; i++)
	{
		double		s = b[i];

		for (int k = 0; k < i; k++)
			s -= a[i][k] * y[k];
		y[i] = s / a[i][i];
	}
	for (int i = NPARAMS - 1; i >= 0; i--)
	{
		double		s = y[i];

		for (int k = i + 1; k < NPARAMS; k++)
			s -= a[k][i] * x[k];
		x[i] = s / a[i][i];
	}
	return true;
}

static Datum
Float8ArrayDatum(const double *values, int n)
{
	Datum		d[NPARAMS];

	for (int i = 0; i < n; i++)
		d[i] = Float8GetDatum(values[i]);
	return PointerGetDatum(construct_array(d, n, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/*
 * pipeline.fraud_fit_logistic(scores regclass, from_time, to_time, c,
 * max_iterations) returns (means, stds, intercept, weights, iterations,
 * rows, frauds, converged): a model fitted on the scored transactions in
 * [from_time, to_time), a missing label counting as genuine.
 */
Datum
pipeline_fraud_fit_logistic(PG_FUNCTION_ARGS)
{
	Oid			scores = PG_GETARG_OID(0);
	Datum		from_time = PG_GETARG_DATUM(1);
	Datum		to_time = PG_GETARG_DATUM(2);
	double		c = PG_GETARG_FLOAT8(3);
	int32		max_iterations = PG_GETARG_INT32(4);
	TupleDesc	result_desc;
	Oid			argtypes[2] = {TIMESTAMPTZOID, TIMESTAMPTZOID};
	Datum		args[2] = {from_time, to_time};
	char	   *relname;
	MemoryContext caller_context;
	int64		nrows;
	int64		nfrauds = 0;
	double	   *x;
	bool	   *y;
	double		mean[FRAUD_NFEATURES] = {0};
	double		std[FRAUD_NFEATURES] = {0};
	double		w[NPARAMS] = {0};
	int			iterations = 0;
	bool		converged = false;
	Datum		values[8];
	bool		nulls[8] = {0};

	if (get_call_result_type(fcinfo, NULL, &result_desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (!(c > 0) || isinf(c))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the inverse regularisation strength c must be positive and finite"),
				 errhint("Use 1.0, the usual default; smaller values regularise more.")));
	if (max_iterations < 1 || max_iterations > 1000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_iterations must be between 1 and 1000"),
				 errhint("Newton's method usually converges in about 10 iterations.")));
	if (get_rel_name(scores) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", scores),
				 errhint("Give a fraud scorer's scores table.")));
	relname = quote_qualified_identifier(get_namespace_name(get_rel_namespace(scores)), get_rel_name(scores));

	caller_context = CurrentMemoryContext;
	SPI_connect();
	if (SPI_execute_with_args(psprintf("SELECT features, COALESCE(label, false) FROM %s "
									   "WHERE tx_time OPERATOR(pg_catalog.>=) $1 "
									   "AND tx_time OPERATOR(pg_catalog.<) $2", relname),
							  2, argtypes, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the training rows");
	nrows = (int64) SPI_processed;
	if (nrows < 2)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("there are %d scored transactions between %s and %s to train on",
						(int) nrows,
						DatumGetCString(DirectFunctionCall1(timestamptz_out, from_time)),
						DatumGetCString(DirectFunctionCall1(timestamptz_out, to_time))),
				 errhint("Train over a period the scorer has already seen, with frauds labelled.")));
	/* the rows outlive SPI's memory */
	x = MemoryContextAllocExtended(caller_context, sizeof(double) * FRAUD_NFEATURES * nrows, MCXT_ALLOC_HUGE);
	y = MemoryContextAllocExtended(caller_context, sizeof(bool) * nrows, MCXT_ALLOC_HUGE);
	for (int64 r = 0; r < nrows; r++)
	{
		bool		isnull;
		ArrayType  *features = DatumGetArrayTypeP(SPI_getbinval(SPI_tuptable->vals[r],
																SPI_tuptable->tupdesc, 1, &isnull));

		if (isnull || ARR_ELEMTYPE(features) != FLOAT8OID ||
			ArrayGetNItems(ARR_NDIM(features), ARR_DIMS(features)) != FRAUD_NFEATURES ||
			ARR_HASNULL(features))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("a scored transaction has no feature vector of %d values", FRAUD_NFEATURES),
					 errhint("Train on rows the scorer wrote, not on rows changed by hand.")));
		memcpy(&x[r * FRAUD_NFEATURES], ARR_DATA_PTR(features), sizeof(double) * FRAUD_NFEATURES);
		for (int k = 0; k < FRAUD_NFEATURES; k++)
			if (isnan(x[r * FRAUD_NFEATURES + k]) || isinf(x[r * FRAUD_NFEATURES + k]))
				ereport(ERROR,
						(errcode(ERRCODE_DATA_EXCEPTION),
						 errmsg("a scored transaction has a feature that is not a finite number"),
						 errhint("Train on rows the scorer wrote, not on rows changed by hand.")));
		y[r] = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2, &isnull));
		nfrauds += y[r];
	}
	SPI_finish();
	if (nfrauds == 0 || nfrauds == nrows)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("the training period must hold both frauds and genuine transactions (it has " INT64_FORMAT " frauds of " INT64_FORMAT ")",
						nfrauds, nrows),
				 errhint("Label frauds through the scorer's labels table, or train over a longer period.")));

	/* standardise in place: training mean and population deviation */
	for (int64 r = 0; r < nrows; r++)
		for (int k = 0; k < FRAUD_NFEATURES; k++)
			mean[k] += x[r * FRAUD_NFEATURES + k];
	for (int k = 0; k < FRAUD_NFEATURES; k++)
		mean[k] /= nrows;
	for (int64 r = 0; r < nrows; r++)
		for (int k = 0; k < FRAUD_NFEATURES; k++)
		{
			double		d = x[r * FRAUD_NFEATURES + k] - mean[k];

			std[k] += d * d;
		}
	for (int k = 0; k < FRAUD_NFEATURES; k++)
	{
		std[k] = sqrt(std[k] / nrows);
		if (!(std[k] > 1e-12))
			std[k] = 1;			/* a constant feature: its weight stays near 0 */
	}
	for (int64 r = 0; r < nrows; r++)
		for (int k = 0; k < FRAUD_NFEATURES; k++)
			x[r * FRAUD_NFEATURES + k] = (x[r * FRAUD_NFEATURES + k] - mean[k]) / std[k];

	while (iterations < max_iterations && !converged)
	{
		double		hessian[NPARAMS][NPARAMS] = {{0}};
		double		gradient[NPARAMS] = {0};
		double		step[NPARAMS];
		double		largest = 0;

		CHECK_FOR_INTERRUPTS();
		for (int64 r = 0; r < nrows; r++)
		{
			const double *row = &x[r * FRAUD_NFEATURES];
			double		xi[NPARAMS];
			double		z = w[0];
			double		mu,
						weight,
						residual;

			xi[0] = 1;
			for (int k = 0; k < FRAUD_NFEATURES; k++)
			{
				xi[k + 1] = row[k];
				z += w[k + 1] * row[k];
			}
			mu = 1.0 / (1.0 + exp(-z));
			residual = mu - (y[r] ? 1.0 : 0.0);
			weight = Max(mu * (1.0 - mu), 1e-12);
			for (int i = 0; i < NPARAMS; i++)
			{
				gradient[i] += xi[i] * residual;
				for (int j = 0; j <= i; j++)
					hessian[i][j] += weight * xi[i] * xi[j];
			}
		}
		for (int i = 1; i < NPARAMS; i++)
		{
			gradient[i] += w[i] / c;
			hessian[i][i] += 1.0 / c;
		}
		for (int i = 0; i < NPARAMS; i++)
			for (int j = i + 1; j < NPARAMS; j++)
				hessian[i][j] = hessian[j][i];
		if (!CholeskySolve(hessian, gradient, step))
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("the training problem is numerically singular"),
					 errhint("Use a smaller c (stronger regularisation) or more training data.")));
		for (int i = 0; i < NPARAMS; i++)
		{
			w[i] -= step[i];
			largest = Max(largest, fabs(step[i]));
		}
		iterations++;
		converged = largest < CONVERGED_STEP;
	}

	values[0] = Float8ArrayDatum(mean, FRAUD_NFEATURES);
	values[1] = Float8ArrayDatum(std, FRAUD_NFEATURES);
	values[2] = Float8GetDatum(w[0]);
	values[3] = Float8ArrayDatum(&w[1], FRAUD_NFEATURES);
	values[4] = Int32GetDatum(iterations);
	values[5] = Int64GetDatum(nrows);
	values[6] = Int64GetDatum(nfrauds);
	values[7] = BoolGetDatum(converged);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(result_desc), values, nulls)));
}
