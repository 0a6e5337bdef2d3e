"""The queue schema as SQLAlchemy Core metadata, for the Python code that queries it.

The migrations (db/migrations/versions/*.sql) create the schema; this module describes it. A test
compares the two on a migrated database, so a column added in one and not the other fails CI.
Constraints, triggers and functions live in the SQL only.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    Table,
    Text,
    Time,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, INTERVAL, JSONB, TIMESTAMP

metadata = MetaData()

TZ = TIMESTAMP(timezone=True)

# The runbook's statuses; a claimed row is queued with a lock, a deferred one queued with a future
# next_attempt_at.
QUEUED, SENT, FAILED = "queued", "sent", "failed"
STATUSES = (QUEUED, SENT, FAILED)


def _id() -> Column:
    return Column("id", BigInteger, Identity(always=False), primary_key=True)


def _timestamps() -> list[Column]:
    return [
        Column("created_at", TZ, nullable=False, server_default=text("now()")),
        Column("updated_at", TZ, nullable=False, server_default=text("now()")),
    ]


notifications = Table(
    "notifications",
    metadata,
    _id(),
    Column("to_wa_id", Text, nullable=False),
    Column("template_name", Text),
    Column("language", Text),
    Column("notification_type", Text, nullable=False),
    Column("domain", Text, nullable=False, server_default="core"),
    Column("payload", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("status", Text, nullable=False, server_default=QUEUED),
    Column("priority", SmallInteger, nullable=False, server_default="0"),
    Column("retry_count", Integer, nullable=False, server_default="0"),
    Column("deferral_count", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", TZ),
    Column("expires_at", TZ),
    Column("locked_at", TZ),
    Column("locked_by", Text),
    Column("error_message", Text),
    Column("last_error_code", Text),
    Column("quiet_hours_override", Boolean, nullable=False, server_default=text("false")),
    Column("correlation_id", Text),
    Column("campaign_id", Text),
    Column("dedupe_key", Text),
    Column("wa_message_id", Text),
    Column("sent_at", TZ),
    Column("delivery_status", Text),
    Column("delivered_at", TZ),
    Column("read_at", TZ),
    Column("failed_late_at", TZ),
    Column("pricing_category", Text),
    Column("billable", Boolean),
    *_timestamps(),
    # Deferrals by cause, {"131056": 3, "quiet_hours": 1}, counted by the database (0009).
    Column("deferrals", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    # Other message ids Meta accepted for this notification: a second send (0014).
    Column("duplicate_wa_message_ids", ARRAY(Text)),
)
Index(
    "notifications_due_idx",
    notifications.c.next_attempt_at,
    notifications.c.id,
    postgresql_where=notifications.c.status == QUEUED,
)
# The claim's order: most urgent band first, then due time (0005).
Index(
    "notifications_claim_idx",
    notifications.c.priority.desc(),
    notifications.c.next_attempt_at,
    notifications.c.id,
    postgresql_where=notifications.c.status == QUEUED,
)
Index(
    "notifications_locked_idx",
    notifications.c.locked_at,
    postgresql_where=(notifications.c.status == QUEUED) & notifications.c.locked_at.is_not(None),
)
Index("notifications_recipient_idx", notifications.c.to_wa_id, notifications.c.created_at)
Index(
    "notifications_correlation_idx",
    notifications.c.correlation_id,
    postgresql_where=notifications.c.correlation_id.is_not(None),
)
Index("notifications_created_at_idx", notifications.c.created_at)
# Dedupe keys are unique within queue_control.dedupe_window, checked under a lock on the key (0009).
Index(
    "notifications_dedupe_key_idx",
    notifications.c.dedupe_key,
    notifications.c.created_at,
    postgresql_where=notifications.c.dedupe_key.is_not(None),
)
Index(
    "notifications_failed_idx", notifications.c.created_at, postgresql_where=notifications.c.status == FAILED
)
Index(
    "notifications_wa_message_id_idx",
    notifications.c.wa_message_id,
    unique=True,
    postgresql_where=notifications.c.wa_message_id.is_not(None),
)

contact_preferences = Table(
    "contact_preferences",
    metadata,
    _id(),
    Column("wa_id", Text, nullable=False),
    Column("profile_id", Text),
    Column("locale", Text, nullable=False, server_default="en"),
    Column("quiet_hours_start", Time),
    Column("quiet_hours_end", Time),
    Column("timezone", Text, nullable=False, server_default="Africa/Kigali"),
    Column("opted_out", Boolean, nullable=False, server_default=text("false")),
    Column("opt_out_at", TZ),
    Column("opt_out_reason", Text),
    Column("opted_in_at", TZ),
    *_timestamps(),
    Column("last_inbound_at", TZ),
    Column("marketing_opted_out", Boolean, nullable=False, server_default=text("false")),
    Column("marketing_changed_at", TZ),
    UniqueConstraint("wa_id", name="contact_preferences_wa_id_key"),
)
Index(
    "contact_preferences_opted_out_idx",
    contact_preferences.c.opt_out_at,
    postgresql_where=contact_preferences.c.opted_out,
)

whatsapp_templates = Table(
    "whatsapp_templates",
    metadata,
    _id(),
    Column("template_key", Text, nullable=False),
    Column("template_name", Text, nullable=False),
    Column("language", Text, nullable=False, server_default="en"),
    Column("category", Text, nullable=False, server_default="UTILITY"),
    Column("domain", Text, nullable=False, server_default="core"),
    Column("description", Text),
    Column("approval_status", Text, nullable=False, server_default="PENDING"),
    Column("is_active", Boolean, nullable=False, server_default=text("true")),
    Column("parameter_format", Text, nullable=False, server_default="POSITIONAL"),
    Column("variables", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("components", JSONB),
    Column("retry_policy", JSONB, nullable=False),
    Column("quiet_hours_exempt", Boolean),
    Column("meta_template_id", Text),
    Column("synced_at", TZ),
    *_timestamps(),
    Column("quality_score", Text),  # Meta's rating: GREEN, YELLOW, RED, UNKNOWN (0009)
    Column("inactive_reason", Text),  # not_at_meta: switched off by sync, back on when APPROVED
    UniqueConstraint("template_key", "language", name="whatsapp_templates_key_language_key"),
    UniqueConstraint("template_name", "language", name="whatsapp_templates_name_language_key"),
)

# Default expiry of a notification by its template's category, when meta gives none (0005).
template_category_defaults = Table(
    "template_category_defaults",
    metadata,
    Column("category", Text, primary_key=True),
    Column("expires_in_seconds", Integer),
    Column("updated_at", TZ, nullable=False, server_default=text("now()")),
)

notification_audit_log = Table(
    "notification_audit_log",
    metadata,
    _id(),
    Column("notification_id", BigInteger, ForeignKey("notifications.id", ondelete="CASCADE")),
    Column("event_type", Text, nullable=False),
    Column("details", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("created_at", TZ, nullable=False, server_default=text("clock_timestamp()")),
)
Index(
    "notification_audit_log_notification_idx",
    notification_audit_log.c.notification_id,
    notification_audit_log.c.created_at,
)
Index("notification_audit_log_created_at_idx", notification_audit_log.c.created_at)

observability_events = Table(
    "observability_events",
    metadata,
    _id(),
    Column("event_type", Text, nullable=False),
    Column("details", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("created_at", TZ, nullable=False, server_default=text("clock_timestamp()")),
)
Index(
    "observability_events_type_time_idx", observability_events.c.event_type, observability_events.c.created_at
)
Index("observability_events_created_at_idx", observability_events.c.created_at)

queue_control = Table(
    "queue_control",
    metadata,
    Column("id", Boolean, primary_key=True, server_default=text("true")),
    Column("paused", Boolean, nullable=False, server_default=text("false")),
    Column("reason", Text),
    Column("changed_at", TZ, nullable=False, server_default=text("now()")),
    Column("changed_by", Text),
    Column("dedupe_window", INTERVAL, nullable=False, server_default=text("'24:00:00'::interval")),
)

# One row per drain: its liveness for the sensor, and whose claimed rows a new drain may take back.
send_workers = Table(
    "send_workers",
    metadata,
    Column("worker_id", Text, primary_key=True),
    Column("sender", Text, nullable=False),
    Column("run_id", Text),
    Column("host", Text, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("backend_pid", Integer),
    Column("trigger", Text),
    Column("started_at", TZ, nullable=False, server_default=text("now()")),
    Column("heartbeat_at", TZ, nullable=False, server_default=text("now()")),
    Column("lifetime_ends_at", TZ),
    Column("ended_at", TZ),
    Column("stopped_by", Text),
    Column("report", JSONB),
)
Index("send_workers_sender_idx", send_workers.c.sender, send_workers.c.started_at.desc())

# A sender Meta refused (credentials or account): kept apart from the operator's pause.
sender_holds = Table(
    "sender_holds",
    metadata,
    Column("sender", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("code", Text),
    Column("reason", Text, nullable=False),
    Column("since", TZ, nullable=False, server_default=text("now()")),
    Column("set_by", Text),
)

daily_domain_summary = Table(
    "daily_domain_summary",
    metadata,
    Column("day", Date, primary_key=True),
    Column("domain", Text, primary_key=True),
    Column("total", Integer, nullable=False),
    Column("sent", Integer, nullable=False),
    Column("failed", Integer, nullable=False),
    Column("queued", Integer, nullable=False),
    Column("failure_rate", Float),
    Column("avg_retries", Float, nullable=False),
    Column("latency_p50_ms", Float),
    Column("latency_p95_ms", Float),
    Column("latency_p99_ms", Float),
    Column("deferrals", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("computed_at", TZ, nullable=False, server_default=text("now()")),
    # Receipts (0007): NULL on days built before it.
    Column("delivered", Integer),
    Column("read", Integer),
    Column("late_failed", Integer),
    Column("delivery_rate", Float),
    Column("read_rate", Float),
    Column("late_failure_rate", Float),
    Column("delivery_latency_p50_ms", Float),
    Column("delivery_latency_p95_ms", Float),
    Column("delivery_latency_p99_ms", Float),
)

daily_error_code_breakdown = Table(
    "daily_error_code_breakdown",
    metadata,
    Column("day", Date, primary_key=True),
    Column("domain", Text, primary_key=True),
    Column("error_code", Text, primary_key=True),
    Column("meaning", Text, nullable=False),
    Column("failed", Integer, nullable=False),
    Column("computed_at", TZ, nullable=False, server_default=text("now()")),
)

hourly_send_profile = Table(
    "hourly_send_profile",
    metadata,
    Column("day", Date, primary_key=True),
    Column("hour", SmallInteger, primary_key=True),
    Column("domain", Text, primary_key=True),
    Column("sent", Integer, nullable=False),
    Column("computed_at", TZ, nullable=False, server_default=text("now()")),
)

alerts = Table(
    "alerts",
    metadata,
    _id(),
    Column("alert_name", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("summary", Text, nullable=False),
    Column("details", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("started_at", TZ, nullable=False, server_default=text("now()")),
    Column("last_notified_at", TZ),
    Column("notifications", Integer, nullable=False, server_default="0"),
    Column("resolved_at", TZ),
)
Index("alerts_one_firing_idx", alerts.c.alert_name, unique=True, postgresql_where=alerts.c.state == "firing")
Index("alerts_started_at_idx", alerts.c.started_at)

# Every update Meta posted to the webhook, stored and applied (idempotent per update).
webhook_events = Table(
    "webhook_events",
    metadata,
    _id(),
    Column("kind", Text, nullable=False),
    Column("update_key", Text, nullable=False),
    Column("wa_message_id", Text),
    Column("wa_id", Text),
    Column("status", Text),
    Column("status_at", TZ),
    Column("error_code", Text),
    Column("error_message", Text),
    Column("pricing_category", Text),
    Column("billable", Boolean),
    Column("payload", JSONB, nullable=False),
    Column("received_at", TZ, nullable=False, server_default=text("now()")),
    Column("applied_at", TZ),
    Column("outcome", Text),
    # The notification a status names by its callback data, through our sender number (0014).
    Column("notification_id", BigInteger),
    UniqueConstraint("kind", "update_key", name="webhook_events_update_key"),
)
Index(
    "webhook_events_naming_idx",
    webhook_events.c.id,
    postgresql_where=text("applied_at IS NULL AND kind = 'status' AND notification_id IS NOT NULL"),
)
Index(
    "webhook_events_waiting_idx",
    webhook_events.c.wa_message_id,
    postgresql_where=text("applied_at IS NULL AND kind = 'status'"),
)
Index("webhook_events_received_at_idx", webhook_events.c.received_at)
Index(
    "notifications_delivery_idx",
    notifications.c.sent_at,
    postgresql_where=text("status = 'sent' AND delivery_status IS NULL"),
)

# Counters that only go up (one row per name and label set).
notify_counters = Table(
    "notify_counters",
    metadata,
    Column("name", Text, primary_key=True),
    Column("labels", JSONB, primary_key=True, server_default=text("'{}'::jsonb")),
    Column("value", BigInteger, nullable=False, server_default="0"),
    Column("updated_at", TZ, nullable=False, server_default=text("now()")),
)

# Histograms with stored buckets (migration 0008): the bounds of each, then per label set and
# bucket the observations that fell in it (not cumulative) and their sum.
notify_histogram_bounds = Table(
    "notify_histogram_bounds",
    metadata,
    Column("name", Text, primary_key=True),
    Column("unit", Text, nullable=False),
    Column("bounds", ARRAY(Float), nullable=False),
)

notify_histograms = Table(
    "notify_histograms",
    metadata,
    Column("name", Text, ForeignKey("notify_histogram_bounds.name"), primary_key=True),
    Column("labels", JSONB, primary_key=True, server_default=text("'{}'::jsonb")),
    Column("bucket_le", Float, primary_key=True),
    Column("count", BigInteger, nullable=False, server_default="0"),
    Column("sum", Float, nullable=False, server_default="0"),
    Column("updated_at", TZ, nullable=False, server_default=text("now()")),
)
