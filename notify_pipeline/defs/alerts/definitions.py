"""The alerts domain's definitions: seven alert sensors, the run-failure and run-recovery sensors,
and their resources."""

import dagster as dg

from notify_pipeline.defs.alerts import sensors
from notify_pipeline.defs.alerts.resources import AlertSink, AlertThresholds

defs = dg.Definitions(
    sensors=[*sensors.ALERT_SENSORS, sensors.run_failure_alert_sensor, sensors.run_recovery_alert_sensor],
    resources={
        # Override a threshold here, e.g. AlertThresholds(queue_depth=5000, alert_repeat_s=3600).
        "alert_thresholds": AlertThresholds(),
        "alert_sink": AlertSink(),
    },
)
