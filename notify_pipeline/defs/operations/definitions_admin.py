"""The operator jobs and schedules for contacts, templates and retention."""

import dagster as dg

from notify_pipeline.defs.operations import contacts, retention, templates

ADMIN_JOBS = [
    contacts.opt_out_contact_job,
    contacts.opt_in_contact_job,
    contacts.set_contact_preferences_job,
    contacts.bulk_quiet_hours_defaults_job,
    templates.sync_templates_job,
    retention.audit_log_cleanup_job,
]

defs = dg.Definitions(
    jobs=ADMIN_JOBS,
    schedules=[templates.sync_templates_schedule, retention.audit_log_cleanup_schedule],
    # For every job of the location: op outputs are reported as metadata and never read by another
    # op, so none is pickled under DAGSTER_HOME/storage (see retention.py).
    resources={"io_manager": retention.DiscardOutputsIOManager()},
)
