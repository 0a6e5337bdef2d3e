"""`notify-pipeline status` names the alerts firing now (text and --json data)."""

from __future__ import annotations

from notify_pipeline.operations.status import queue_status, render


def test_status_shows_firing_alerts_and_not_resolved_ones(db) -> None:
    assert "Alerts: none firing" in render(queue_status(db))
    db.execute(
        "INSERT INTO alerts (alert_name, state, summary) VALUES ('queue_depth', 'firing', 'Queue backed up'), "
        "('oldest_queued', 'resolved', 'was old')"
    )
    status = queue_status(db)
    text = render(status)
    assert "1 firing" in text and "queue_depth" in text and "oldest_queued" not in text
    firing = status.as_dict()["alerts_firing"]
    assert [a["alert"] for a in firing] == ["queue_depth"]
