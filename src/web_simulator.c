/*-------------------------------------------------------------------------
 *
 * web_simulator.c
 *		A generator of web traffic with injected incidents, so that the
 *		demo, the tests and the benchmarks of anomaly detection need no
 *		external data.
 *
 * Page views arrive at a rate that follows the time of day (lowest at
 * 03:00, highest at 15:00 UTC), spread over pages by a Zipf law (a few
 * pages take most views); each comes from one of the simulated users (a
 * fixed address, country and browser each), with mostly 200s, a few 404s
 * and rare 500s, log-normal latencies and sizes.  Incidents change that
 * for some minutes:
 *   error_spike   a page answers 500 to a share (size) of its requests;
 *   traffic_drop  a share (size) of the views of a page, or of all pages,
 *                 is lost;
 *   bot_burst     one address requests size pages a minute more, as a bot.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "web_simulator.h"

PG_FUNCTION_INFO_V1(pipeline_simulate_web_traffic);

#define NPAGES 60
#define NUSERS 5000
#define ZIPF_EXPONENT 1.1

static const char *const named_pages[] = {
	"/", "/search", "/cart", "/checkout", "/login", "/account", "/help", "/about"
};
static const char *const countries[] = {"US", "DE", "GB", "FR", "IN", "BR", "JP", "CA"};
static const double country_weights[] = {0.38, 0.14, 0.12, 0.09, 0.10, 0.08, 0.05, 0.04};
static const char *const browsers[] = {
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
	"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
	"Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36 Edg/120.0"
};
static const double browser_weights[] = {0.60, 0.20, 0.12, 0.08};
#define BOT_AGENT "python-requests/2.31.0"

typedef enum IncidentKind
{
	ERROR_SPIKE, TRAFFIC_DROP, BOT_BURST
} IncidentKind;

typedef struct Incident
{
	IncidentKind kind;
	char	   *page;			/* NULL: every page */
	char	   *client_ip;
	int			start;			/* minute */
	int			length;			/* minutes */
	double		size;
} Incident;

typedef struct WebEvent
{
	int64		usec;			/* within its minute */
	int			page;
	int			user;			/* -1: a bot */
	int			incident;		/* the bot's incident */
	int			status;
	double		latency;
	int			bytes;
} WebEvent;

static double
Gaussian(pg_prng_state *rng)
{
	double		u1 = 1.0 - pg_prng_double(rng);
	double		u2 = pg_prng_double(rng);

	return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

static int
Pick(pg_prng_state *rng, const double *cumulative, int n)
{
	double		u = pg_prng_double(rng) * cumulative[n - 1];
	int			lo = 0,
				hi = n - 1;

	while (lo < hi)
	{
		int			mid = (lo + hi) / 2;

		if (cumulative[mid] < u)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int
CompareEvents(const void *a, const void *b)
{
	int64		x = ((const WebEvent *) a)->usec;
	int64		y = ((const WebEvent *) b)->usec;

	return (x > y) - (x < y);
}

static char *
PageName(int page)
{
	if (page < (int) lengthof(named_pages))
		return pstrdup(named_pages[page]);
	return psprintf("/product/%d", page - (int) lengthof(named_pages) + 1);
}

static bool
Active(const Incident *incident, int minute)
{
	return minute >= incident->start && minute < incident->start + incident->length;
}

static bool
OnPage(const Incident *incident, const char *page)
{
	return incident->page == NULL || strcmp(incident->page, page) == 0;
}

/* text[] (or int4[], float8[]) elements as C values; NULLs as NULL strings / 0 */
static Datum *
Elements(ArrayType *array, Oid type, int16 len, bool byval, char align, bool **nulls, int *n)
{
	Datum	   *values;

	deconstruct_array(array, type, len, byval, align, &values, nulls, n);
	return values;
}

/*
 * pipeline.simulate_web_traffic_events(minutes, events_per_minute, seed,
 * start_time, kinds, pages, client_ips, starts, lengths, sizes): the events
 * in time order; pipeline.simulate_web_traffic checks the incidents.
 */
Datum
pipeline_simulate_web_traffic(PG_FUNCTION_ARGS)
{
	int32		minutes = PG_GETARG_INT32(0);
	int32		per_minute = PG_GETARG_INT32(1);
	int64		seed = PG_GETARG_INT64(2);
	TimestampTz start = PG_GETARG_TIMESTAMPTZ(3);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Incident   *incidents;
	int			nincidents;
	double		page_cumulative[NPAGES];
	double		country_cumulative[lengthof(countries)];
	double		browser_cumulative[lengthof(browsers)];
	char	   *page_names[NPAGES];
	int		   *user_country = palloc(sizeof(int) * NUSERS);
	int		   *user_browser = palloc(sizeof(int) * NUSERS);
	char	  **user_ip = palloc(sizeof(char *) * NUSERS);
	pg_prng_state rng;
	WebEvent   *events = NULL;
	int			capacity = 0;

	{
		bool	   *nulls[6];
		int			n[6];
		Datum	   *kinds = Elements(PG_GETARG_ARRAYTYPE_P(4), TEXTOID, -1, false, TYPALIGN_INT, &nulls[0], &n[0]);
		Datum	   *pages = Elements(PG_GETARG_ARRAYTYPE_P(5), TEXTOID, -1, false, TYPALIGN_INT, &nulls[1], &n[1]);
		Datum	   *ips = Elements(PG_GETARG_ARRAYTYPE_P(6), TEXTOID, -1, false, TYPALIGN_INT, &nulls[2], &n[2]);
		Datum	   *starts = Elements(PG_GETARG_ARRAYTYPE_P(7), INT4OID, 4, true, TYPALIGN_INT, &nulls[3], &n[3]);
		Datum	   *lengths = Elements(PG_GETARG_ARRAYTYPE_P(8), INT4OID, 4, true, TYPALIGN_INT, &nulls[4], &n[4]);
		Datum	   *sizes = Elements(PG_GETARG_ARRAYTYPE_P(9), FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
									 &nulls[5], &n[5]);

		nincidents = n[0];
		for (int k = 1; k < 6; k++)
			if (n[k] != nincidents)
				elog(ERROR, "incident arrays differ in length");
		incidents = palloc0(sizeof(Incident) * Max(nincidents, 1));
		for (int i = 0; i < nincidents; i++)
		{
			char	   *kind = TextDatumGetCString(kinds[i]);

			incidents[i].kind = strcmp(kind, "error_spike") == 0 ? ERROR_SPIKE :
				strcmp(kind, "traffic_drop") == 0 ? TRAFFIC_DROP : BOT_BURST;
			incidents[i].page = nulls[1][i] ? NULL : TextDatumGetCString(pages[i]);
			incidents[i].client_ip = nulls[2][i] ? NULL : TextDatumGetCString(ips[i]);
			incidents[i].start = nulls[3][i] ? 0 : DatumGetInt32(starts[i]);
			incidents[i].length = nulls[4][i] ? 0 : DatumGetInt32(lengths[i]);
			incidents[i].size = nulls[5][i] ? 0 : DatumGetFloat8(sizes[i]);
		}
	}
	InitMaterializedSRF(fcinfo, 0);

	for (int p = 0; p < NPAGES; p++)
	{
		page_cumulative[p] = (p > 0 ? page_cumulative[p - 1] : 0) + 1.0 / pow(p + 1, ZIPF_EXPONENT);
		page_names[p] = PageName(p);
	}
	for (int c = 0; c < (int) lengthof(countries); c++)
		country_cumulative[c] = (c > 0 ? country_cumulative[c - 1] : 0) + country_weights[c];
	for (int b = 0; b < (int) lengthof(browsers); b++)
		browser_cumulative[b] = (b > 0 ? browser_cumulative[b - 1] : 0) + browser_weights[b];
	pg_prng_seed(&rng, (uint64) seed * 2 + 1);
	for (int u = 0; u < NUSERS; u++)
	{
		user_country[u] = Pick(&rng, country_cumulative, lengthof(countries));
		user_browser[u] = Pick(&rng, browser_cumulative, lengthof(browsers));
		user_ip[u] = psprintf("10.%d.%d.%d", (u >> 16) & 255, (u >> 8) & 255, u & 255);
	}

	pg_prng_seed(&rng, (uint64) seed * 2);
	for (int minute = 0; minute < minutes; minute++)
	{
		TimestampTz minute_start = start + (int64) minute * USECS_PER_MINUTE;
		double		hour = fmod((double) (minute_start / USECS_PER_SEC) / 3600.0, 24.0);
		/* diurnal: from 0.5x at 03:00 to 1.5x at 15:00 */
		double		rate = per_minute * (1.0 - 0.5 * cos(2.0 * M_PI * (hour - 3.0) / 24.0));
		int			count = (int) Max(0, floor(rate + sqrt(rate) * Gaussian(&rng) + 0.5));
		int			n = 0;

		CHECK_FOR_INTERRUPTS();
		for (int i = 0; i < nincidents; i++)
			if (incidents[i].kind == BOT_BURST && Active(&incidents[i], minute))
				count += (int) incidents[i].size;
		if (count > capacity)
		{
			capacity = count * 2;
			events = events ? repalloc(events, sizeof(WebEvent) * capacity) : palloc(sizeof(WebEvent) * capacity);
		}
		for (int i = 0; i < nincidents; i++)
		{
			if (incidents[i].kind != BOT_BURST || !Active(&incidents[i], minute))
				continue;
			for (int k = 0; k < (int) incidents[i].size; k++)
			{
				WebEvent   *e = &events[n++];

				e->usec = (int64) (pg_prng_double(&rng) * USECS_PER_MINUTE);
				e->page = (int) (pg_prng_double(&rng) * NPAGES);
				e->user = -1;
				e->incident = i;
				e->status = 200;
				e->latency = 20.0 * exp(0.3 * Gaussian(&rng));
				e->bytes = (int) (8000.0 * exp(0.4 * Gaussian(&rng)));
			}
		}
		while (n < count)
		{
			WebEvent   *e = &events[n];
			double		u;
			bool		dropped = false;

			e->usec = (int64) (pg_prng_double(&rng) * USECS_PER_MINUTE);
			e->page = Pick(&rng, page_cumulative, NPAGES);
			e->user = (int) (pg_prng_double(&rng) * NUSERS);
			e->incident = -1;
			u = pg_prng_double(&rng);
			e->status = u < 0.985 ? 200 : u < 0.995 ? 404 : 500;
			e->latency = (e->page == 3 ? 250.0 : 90.0) * exp(0.5 * Gaussian(&rng));
			e->bytes = (int) (20000.0 * exp(0.6 * Gaussian(&rng)));
			for (int i = 0; i < nincidents; i++)
			{
				if (!Active(&incidents[i], minute) || !OnPage(&incidents[i], page_names[e->page]))
					continue;
				if (incidents[i].kind == ERROR_SPIKE && pg_prng_double(&rng) < incidents[i].size)
				{
					e->status = 500;
					e->latency *= 3;
				}
				else if (incidents[i].kind == TRAFFIC_DROP && pg_prng_double(&rng) < incidents[i].size)
					dropped = true;
			}
			if (dropped)
				count--;		/* a view lost */
			else
				n++;
		}
		qsort(events, n, sizeof(WebEvent), CompareEvents);
		for (int k = 0; k < n; k++)
		{
			WebEvent   *e = &events[k];
			Datum		values[9];
			bool		nulls[9] = {false};

			values[0] = TimestampTzGetDatum(minute_start + e->usec);
			values[1] = CStringGetTextDatum(page_names[e->page]);
			if (e->user < 0)
			{
				const char *ip = incidents[e->incident].client_ip;

				nulls[2] = true;
				values[3] = CStringGetTextDatum(ip ? ip : "203.0.113.7");
				values[4] = CStringGetTextDatum(countries[0]);
				values[5] = CStringGetTextDatum(BOT_AGENT);
			}
			else
			{
				values[2] = Int64GetDatum(e->user + 1);
				values[3] = CStringGetTextDatum(user_ip[e->user]);
				values[4] = CStringGetTextDatum(countries[user_country[e->user]]);
				values[5] = CStringGetTextDatum(browsers[user_browser[e->user]]);
			}
			values[6] = Int32GetDatum(e->status);
			values[7] = Float8GetDatum(round(e->latency * 10.0) / 10.0);
			values[8] = Int32GetDatum(e->bytes);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	}
	return (Datum) 0;
}
