/*-------------------------------------------------------------------------
 *
 * fuzz_fast_input.c
 *		copy_input.c's fast input functions against PostgreSQL's own.
 *
 * The fast paths are static: the file is compiled into this one.  For any
 * text, each must give what PostgreSQL's input function gives — the same
 * value, or an error too (the fast path hands what it does not take to the
 * input function, so an error can only come from there).
 *
 *-------------------------------------------------------------------------
 */
#include "../../src/copy_input.c"

#include <stdio.h>
#include <stdlib.h>

#include "utils/fmgrprotos.h"

extern void FuzzFastInput(const char *text);

/* The value's text form, or NULL for an error */
static char *
InputResult(PGFunction input, Oid output_function, const char *text, int32 typmod)
{
	char	   *result = NULL;
	MemoryContext context = CurrentMemoryContext;

	PG_TRY();
	{
		Datum		value = DirectFunctionCall3(input, CStringGetDatum(text), ObjectIdGetDatum(InvalidOid),
												Int32GetDatum(typmod));

		result = DatumGetCString(OidFunctionCall1(output_function, value));
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(context);
		FlushErrorState();
	}
	PG_END_TRY();
	return result;
}

static void
Compare(const char *what, PGFunction fast, PGFunction postgres, Oid output_function, const char *text,
		int32 typmod)
{
	char	   *ours = InputResult(fast, output_function, text, typmod);
	char	   *theirs = InputResult(postgres, output_function, text, typmod);

	if ((ours == NULL) != (theirs == NULL) || (ours != NULL && strcmp(ours, theirs) != 0))
	{
		fprintf(stderr, "pipeline_fuzz: fast %s input of \"%s\" (typmod %d) gives %s, PostgreSQL %s\n",
				what, text, typmod, ours ? ours : "an error", theirs ? theirs : "an error");
		abort();
	}
}

void
FuzzFastInput(const char *text)
{
	Compare("timestamptz", FastTimestamptzIn, timestamptz_in, F_TIMESTAMPTZ_OUT, text, -1);
	Compare("timestamp", FastTimestampIn, timestamp_in, F_TIMESTAMP_OUT, text, -1);
	Compare("numeric", FastNumericIn, numeric_in, F_NUMERIC_OUT, text, -1);
	/* numeric(12,3) */
	Compare("numeric", FastNumericIn, numeric_in, F_NUMERIC_OUT, text, ((12 << 16) | 3) + VARHDRSZ);
}
