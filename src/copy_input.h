/*-------------------------------------------------------------------------
 *
 * copy_input.h
 *		Faster type input for the COPY that stores stream rows.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_PIPELINE_COPY_INPUT_H
#define PG_PIPELINE_COPY_INPUT_H

#include "commands/copy.h"

extern void PipelineUseFastInput(CopyFromState cstate);

#endif							/* PG_PIPELINE_COPY_INPUT_H */
