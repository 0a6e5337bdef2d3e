"""The alerts domain's definitions: seven alert sensors, the run-failure and run-recovery sensors,
the alerts' asset checks on the notifications asset, and their resources."""

import dagster as dg

from notify_pipeline.defs.alerts import checks, sensors
from notify_pipeline.defs.alerts.resources import AlertSink, AlertThresholds

defs = dg.Definitions(
    asset_checks=[checks.notification_alert_checks],
    sensors=[*sensors.ALERT_SENSORS, sensors.run_failure_alert_sensor, sensors.run_recovery_alert_sensor],
    resources={
        # Override a threshold here, e.g. AlertThresholds(queue_depth=5000, alert_repeat_s=3600).
        "alert_thresholds": AlertThresholds(),
        "alert_sink": AlertSink(),
    },
)
