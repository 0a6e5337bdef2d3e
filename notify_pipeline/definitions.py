"""The notify-pipeline code location: every domain's definitions, merged.

Loaded by Dagster through workspace.yaml (module notify_pipeline.definitions).
"""

import dagster as dg

from notify_pipeline.defs import resources
from notify_pipeline.defs.alerts import definitions as alerts
from notify_pipeline.defs.metrics import definitions as metrics
from notify_pipeline.defs.operations import definitions_admin as admin
from notify_pipeline.defs.operations import definitions_diagnostics as diagnostics
from notify_pipeline.defs.queue import definitions as queue
from notify_pipeline.defs.reporting import definitions as reporting

defs = dg.Definitions.merge(
    resources.defs,
    queue.defs,
    alerts.defs,
    metrics.defs,
    reporting.defs,
    admin.defs,
    diagnostics.defs,
)
