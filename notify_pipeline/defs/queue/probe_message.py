"""send_test_notification_job: queue one message to a test number, as the runbook's manual test."""

import uuid

import dagster as dg
from pydantic import Field

from notify_pipeline.defs.queue.jobs import one_op_job
from notify_pipeline.defs.resources import QueueDatabase, run_actor
from notify_pipeline.engine.enqueue import build_message, enqueue


class SampleNotificationConfig(dg.Config):
    to: str = Field(description="Test recipient, international format (+250788999001).")
    template: str | None = Field(default="welcome_message", description="Template name; empty for text.")
    language: str = "en"
    params: list[str] = Field(default_factory=lambda: ["Test User"], description="Body variables, in order.")
    text: str | None = Field(default=None, description="Free-form text instead of a template.")
    domain: str = "core"


@dg.op
def queue_test_notification(
    context: dg.OpExecutionContext, config: SampleNotificationConfig, queue_db: QueueDatabase
) -> int:
    """Queue the test message (type 'test', correlation id test_<uuid>); the sensor sends it."""
    message = build_message(
        config.to,
        template=None if config.text else config.template,
        language=config.language,
        params=config.params,
        text=config.text,
    )
    correlation_id = f"test_{uuid.uuid4()}"
    with queue_db.connection(actor=run_actor(context)) as conn:
        notification_id = enqueue(
            conn, message, {"type": "test", "domain": config.domain, "correlation_id": correlation_id}
        )
    context.add_output_metadata({"notification_id": notification_id, "correlation_id": correlation_id})
    return notification_id


send_test_notification_job = one_op_job(
    queue_test_notification,
    "send_test_notification_job",
    "Queue a test notification (the runbook's manual test).",
)
