/*-------------------------------------------------------------------------
 *
 * fraud_simulator.c
 *		A generator of card transactions with the Fraud Detection Handbook's
 *		model (Le Borgne et al., chapter 3), so that the demo, the tests and
 *		the benchmarks need no external data.
 *
 * Written from the model's description, not from its code: customers and
 * terminals at uniform random places on a 100 x 100 grid, each customer
 * using the terminals closer than 5, a Poisson number of transactions a
 * day around noon, normally distributed amounts; then three fraud
 * scenarios (amounts over 220; two terminals compromised each day for 28
 * days; three cards compromised each day, a third of their transactions
 * over the next 14 days multiplied by 5).  Our own seeded generator, so the
 * draws differ from numpy's but the statistics are the same.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "common/pg_prng.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "fraud_simulator.h"

PG_FUNCTION_INFO_V1(pipeline_simulate_transactions);

#define GRID_SIZE 100.0
#define TERMINAL_RADIUS 5.0
#define SECONDS_PER_DAY 86400
#define FRAUD_AMOUNT 22000		/* scenario 1: amounts over 220.00 */
#define COMPROMISED_TERMINALS_PER_DAY 2
#define TERMINAL_FRAUD_DAYS 28
#define COMPROMISED_CARDS_PER_DAY 3
#define CARD_FRAUD_DAYS 14

typedef struct SimCustomer
{
	double		x,
				y,
				mean_amount,
				std_amount,
				tx_per_day;
	int			nterminals;
	int32	   *terminals;
} SimCustomer;

typedef struct SimTransaction
{
	int64		seconds;		/* since the start date */
	int32		customer;
	int32		terminal;
	int64		cents;
	int32		order;			/* generation order: breaks ties in time */
	int16		scenario;		/* 0 genuine */
} SimTransaction;

static double
Gaussian(pg_prng_state *rng, double mean, double std)
{
	double		u1 = 1.0 - pg_prng_double(rng);	/* (0, 1]: log is finite */
	double		u2 = pg_prng_double(rng);

	return mean + std * sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* Knuth's method: the means here are at most 4 */
static int
Poisson(pg_prng_state *rng, double mean)
{
	double		limit = exp(-mean);
	double		product = pg_prng_double(rng);
	int			n = 0;

	while (product > limit)
	{
		n++;
		product *= pg_prng_double(rng);
	}
	return n;
}

static int
CompareTransactions(const void *a, const void *b)
{
	const SimTransaction *x = a;
	const SimTransaction *y = b;

	if (x->seconds != y->seconds)
		return x->seconds < y->seconds ? -1 : 1;
	return x->order < y->order ? -1 : x->order > y->order;
}

static void
CheckArgument(bool ok, const char *name, const char *hint)
{
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is out of range", name),
				 errhint("%s", hint)));
}

/*
 * pipeline.simulate_transactions(customers, terminals, days, seed, start_date)
 * returns (transaction_id, tx_time, customer_id, terminal_id, amount,
 * is_fraud, fraud_scenario) in time order.
 */
Datum
pipeline_simulate_transactions(PG_FUNCTION_ARGS)
{
	int32		ncustomers = PG_GETARG_INT32(0);
	int32		nterminals = PG_GETARG_INT32(1);
	int32		ndays = PG_GETARG_INT32(2);
	int64		seed = PG_GETARG_INT64(3);
	DateADT		start_date = PG_GETARG_DATEADT(4);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	pg_prng_state rng;
	SimCustomer *customers;
	double	   *terminal_x,
			   *terminal_y;
	SimTransaction *tx;
	int64		ntx = 0,
				capacity;
	bool	   *terminal_compromised;	/* [terminal * ndays + day] */
	int64	   *first_of_customer;
	int64	   *by_customer;
	Timestamp	start;

	CheckArgument(ncustomers >= 1 && ncustomers <= 1000000, "customers",
				  "Simulate between 1 and 1,000,000 customers.");
	CheckArgument(nterminals >= 1 && nterminals <= 1000000, "terminals",
				  "Simulate between 1 and 1,000,000 terminals.");
	CheckArgument(ndays >= 1 && ndays <= 3660, "days", "Simulate between 1 and 3,660 days.");
	if (DATE_NOT_FINITE(start_date))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("start_date must be finite"),
				 errhint("Give a day, for example '2018-04-01'.")));
	{
		int			overflow = 0;

		start = date2timestamp_opt_overflow(start_date, &overflow);
		if (overflow != 0 || !IS_VALID_TIMESTAMP(start + (int64) ndays * USECS_PER_DAY))
			ereport(ERROR,
					(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
					 errmsg("start_date is out of range"),
					 errhint("Give a day between 4713 BC and 294276 AD, less the days simulated.")));
	}
	InitMaterializedSRF(fcinfo, 0);

	/* terminals first, then customers, each from its own stream of the seed */
	terminal_x = palloc(sizeof(double) * nterminals);
	terminal_y = palloc(sizeof(double) * nterminals);
	pg_prng_seed(&rng, (uint64) seed * 3 + 1);
	for (int t = 0; t < nterminals; t++)
	{
		terminal_x[t] = pg_prng_double(&rng) * GRID_SIZE;
		terminal_y[t] = pg_prng_double(&rng) * GRID_SIZE;
	}
	customers = palloc(sizeof(SimCustomer) * ncustomers);
	pg_prng_seed(&rng, (uint64) seed * 3);
	for (int c = 0; c < ncustomers; c++)
	{
		SimCustomer *cu = &customers[c];

		cu->x = pg_prng_double(&rng) * GRID_SIZE;
		cu->y = pg_prng_double(&rng) * GRID_SIZE;
		cu->mean_amount = 5.0 + pg_prng_double(&rng) * 95.0;
		cu->std_amount = cu->mean_amount / 2.0;
		cu->tx_per_day = pg_prng_double(&rng) * 4.0;
		cu->nterminals = 0;
		cu->terminals = NULL;
	}
	for (int c = 0; c < ncustomers; c++)
	{
		SimCustomer *cu = &customers[c];
		int			n = 0;

		CHECK_FOR_INTERRUPTS();
		cu->terminals = palloc(sizeof(int32) * 16);
		for (int t = 0; t < nterminals; t++)
		{
			double		dx = cu->x - terminal_x[t];
			double		dy = cu->y - terminal_y[t];

			if (dx * dx + dy * dy < TERMINAL_RADIUS * TERMINAL_RADIUS)
			{
				if (n >= 16 && (n & (n - 1)) == 0)
					cu->terminals = repalloc(cu->terminals, sizeof(int32) * n * 2);
				cu->terminals[n++] = t;
			}
		}
		cu->nterminals = n;
	}

	/* transactions: each customer from a stream seeded by its id */
	capacity = (int64) ncustomers * ndays * 2 + 16;
	tx = palloc_extended(sizeof(SimTransaction) * capacity, MCXT_ALLOC_HUGE);
	for (int c = 0; c < ncustomers; c++)
	{
		SimCustomer *cu = &customers[c];

		if (cu->nterminals == 0)
			continue;
		pg_prng_seed(&rng, (uint64) seed * 1000003 + c + 2);
		for (int day = 0; day < ndays; day++)
		{
			int			n = Poisson(&rng, cu->tx_per_day);

			for (int i = 0; i < n; i++)
			{
				int64		second = (int64) Gaussian(&rng, SECONDS_PER_DAY / 2, 20000);
				double		amount;
				SimTransaction *t;

				if (second <= 0 || second >= SECONDS_PER_DAY)
					continue;
				amount = Gaussian(&rng, cu->mean_amount, cu->std_amount);
				if (amount < 0)
					amount = pg_prng_double(&rng) * cu->mean_amount * 2.0;
				if (ntx == capacity)
				{
					capacity *= 2;
					tx = repalloc_huge(tx, sizeof(SimTransaction) * capacity);
				}
				t = &tx[ntx];
				t->seconds = (int64) day * SECONDS_PER_DAY + second;
				t->customer = c;
				t->terminal = cu->terminals[pg_prng_uint64_range(&rng, 0, cu->nterminals - 1)];
				t->cents = (int64) rint(amount * 100.0);
				t->order = (int32) ntx;
				t->scenario = 0;
				ntx++;
			}
		}
	}
	qsort(tx, ntx, sizeof(SimTransaction), CompareTransactions);

	/* scenario 1: large amounts */
	for (int64 i = 0; i < ntx; i++)
		if (tx[i].cents > FRAUD_AMOUNT)
			tx[i].scenario = 1;

	/* scenario 2: compromised terminals, every transaction for 28 days */
	pg_prng_seed(&rng, (uint64) seed * 7 + 5);
	terminal_compromised = palloc_extended((Size) nterminals * ndays, MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	for (int day = 0; day < ndays; day++)
		for (int k = 0; k < COMPROMISED_TERMINALS_PER_DAY; k++)
		{
			int			t = (int) pg_prng_uint64_range(&rng, 0, nterminals - 1);

			for (int d = day; d < Min(ndays, day + TERMINAL_FRAUD_DAYS); d++)
				terminal_compromised[(int64) t * ndays + d] = true;
		}
	for (int64 i = 0; i < ntx; i++)
		if (terminal_compromised[(int64) tx[i].terminal * ndays + tx[i].seconds / SECONDS_PER_DAY])
			tx[i].scenario = 2;

	/*
	 * scenario 3: compromised cards; a third of their transactions over the
	 * next 14 days (drawn per compromise, so some twice) are multiplied by 5
	 */
	first_of_customer = palloc0(sizeof(int64) * (ncustomers + 1));
	for (int64 i = 0; i < ntx; i++)
		first_of_customer[tx[i].customer + 1]++;
	for (int c = 0; c < ncustomers; c++)
		first_of_customer[c + 1] += first_of_customer[c];
	by_customer = palloc_extended(sizeof(int64) * Max(ntx, 1), MCXT_ALLOC_HUGE);
	{
		int64	   *fill = palloc(sizeof(int64) * ncustomers);

		memcpy(fill, first_of_customer, sizeof(int64) * ncustomers);
		for (int64 i = 0; i < ntx; i++)
			by_customer[fill[tx[i].customer]++] = i;	/* time order per customer */
	}
	for (int day = 0; day < ndays; day++)
		for (int k = 0; k < COMPROMISED_CARDS_PER_DAY; k++)
		{
			int			c = (int) pg_prng_uint64_range(&rng, 0, ncustomers - 1);
			int64		lo = first_of_customer[c],
						hi = first_of_customer[c + 1];
			int64	   *window = palloc(sizeof(int64) * Max(hi - lo, 1));
			int			n = 0;

			for (int64 j = lo; j < hi; j++)
			{
				int64		d = tx[by_customer[j]].seconds / SECONDS_PER_DAY;

				if (d >= day && d < day + CARD_FRAUD_DAYS)
					window[n++] = by_customer[j];
			}
			/* a partial Fisher-Yates shuffle picks n / 3 distinct ones */
			for (int j = 0; j < n / 3; j++)
			{
				int			pick = j + (int) pg_prng_uint64_range(&rng, 0, n - 1 - j);
				int64		chosen = window[pick];

				window[pick] = window[j];
				window[j] = chosen;
				tx[chosen].cents *= 5;
				tx[chosen].scenario = 3;
			}
			pfree(window);
		}

	for (int64 i = 0; i < ntx; i++)
	{
		Datum		values[7];
		bool		nulls[7] = {0};
		char		amount[32];

		snprintf(amount, sizeof(amount), INT64_FORMAT ".%02d", tx[i].cents / 100,
				 (int) (tx[i].cents % 100));
		values[0] = Int64GetDatum(i);
		values[1] = TimestampGetDatum(start + tx[i].seconds * USECS_PER_SEC);
		values[2] = Int64GetDatum(tx[i].customer);
		values[3] = Int64GetDatum(tx[i].terminal);
		values[4] = DirectFunctionCall3(numeric_in, CStringGetDatum(amount),
										ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
		values[5] = BoolGetDatum(tx[i].scenario != 0);
		values[6] = Int32GetDatum(tx[i].scenario);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		pfree(DatumGetPointer(values[4]));
	}
	return (Datum) 0;
}
