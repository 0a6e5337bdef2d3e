"""Template sync job and its daily schedule: Meta's message_templates into whatsapp_templates.

The scheduled run writes (dry_run: false); a run launched by hand is a dry run unless told otherwise.
"""

import dagster as dg
from pydantic import Field

from notify_pipeline.defs.resources import QueueDatabase, WhatsAppCloudApi, run_actor
from notify_pipeline.operations import templates


class SyncTemplatesConfig(dg.Config):
    dry_run: bool = Field(default=True, description="Only report what would change. Set false to write.")


@dg.op(tags={"kind": "whatsapp"})
def sync_whatsapp_templates(
    context: dg.OpExecutionContext,
    config: SyncTemplatesConfig,
    queue_db: QueueDatabase,
    whatsapp: WhatsAppCloudApi,
) -> dict:
    """List the business account's templates at Meta and sync them; settle waiting rows."""
    actor = run_actor(context)
    try:
        remote = templates.fetch_remote(whatsapp.client_settings(), whatsapp.waba_id)
        with queue_db.connection(actor=actor) as conn:
            report = templates.sync_templates(conn, remote, actor, dry_run=config.dry_run)
    except (templates.TemplateError, ValueError) as exc:
        raise dg.Failure(description=str(exc)) from exc
    for line in report.lines():
        context.log.info(line)
    context.add_output_metadata(
        {
            "dry_run": report.dry_run,
            "added": len(report.added),
            "changed": dg.MetadataValue.json(report.changed),
            "unchanged": report.unchanged,
            "not_at_meta_switched_off": dg.MetadataValue.json(report.not_at_meta),
            "held_rows": dg.MetadataValue.json(report.held),
            "failed_rows": dg.MetadataValue.json(report.failed),
        }
    )
    return report.as_dict()


@dg.job(description="Sync approval status, category, language and variables of templates from Meta.")
def sync_templates_job() -> None:
    sync_whatsapp_templates()


sync_templates_schedule = dg.ScheduleDefinition(
    name="sync_templates_schedule",
    job=sync_templates_job,
    cron_schedule="15 4 * * *",
    run_config=dg.RunConfig(ops={"sync_whatsapp_templates": SyncTemplatesConfig(dry_run=False)}),
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily: sync templates from Meta, fail waiting rows of templates Meta disabled or deleted.",
)
