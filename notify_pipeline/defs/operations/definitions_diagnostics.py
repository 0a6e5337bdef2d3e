"""The diagnostics job's definitions, merged into the code location by notify_pipeline/definitions.py."""

import dagster as dg

from notify_pipeline.defs.operations.diagnostics import diagnostics_job

defs = dg.Definitions(jobs=[diagnostics_job])
