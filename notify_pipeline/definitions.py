"""The notify-pipeline code location: every domain's definitions, merged.

Loaded by Dagster through workspace.yaml (module notify_pipeline.definitions).
"""

import dagster as dg

from notify_pipeline.defs import resources
from notify_pipeline.defs.queue import definitions as queue

defs = dg.Definitions.merge(
    resources.defs,
    queue.defs,
)
