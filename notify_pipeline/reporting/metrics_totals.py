"""The series the Prometheus alert rules read, and the label values each counter starts with at 0.

A counter series that first appears at its full value has no earlier sample, so Prometheus'
increase() and rate() never see that jump: 200 failures of a new domain, or a first error code,
read as nothing. So:

- the rules read totals that exist from the first scrape, 0 before the first event: outcomes
  summed over every label, opt-outs (contacts and blocked sends) and Meta's throttling by code;
- per-domain totals exist from the moment a domain has queued rows, before its first outcome
  (a domain queued and finished between two scrapes still first appears at its full value: the
  rules count a domain series that was absent an hour earlier from 0);
- counters whose label values are known in advance start at 0 for each: the code table's codes
  (whatsapp/errors.py), the deferral reasons, the opt-out causes.

Every value is a sum of the database's counters, so it only goes up, like they do.
"""

from __future__ import annotations

from prometheus_client.metrics_core import CounterMetricFamily, Metric

from notify_pipeline.engine.reasons import DEFERRAL_REASONS
from notify_pipeline.reporting.figures import OPT_OUT_CAUSES
from notify_pipeline.reporting.metrics_sql import Labels, Snapshot
from notify_pipeline.whatsapp.errors import CODES, ErrorClass, throttling_codes

# The database's outcome counters, each summed over its labels (notify_outcomes_total{outcome}).
OUTCOMES = ("sent", "failed", "late_failed", "filtered", "held", "expired", "cancelled")
# The failure rate's two terms per domain (notify_domain_outcomes_total{domain, outcome}).
DOMAIN_OUTCOMES = ("sent", "failed")
# Opt-outs as the opt-out alert counts them (notify_opt_outs_total{kind}).
OPT_OUT_KINDS = ("contact", "blocked_send")
# Codes a row is retried or deferred for: the code table's transient and throttling codes.
RETRYABLE = (ErrorClass.TRANSIENT, ErrorClass.THROTTLED)


def known_labels(snap: Snapshot) -> dict[str, list[Labels]]:
    """Per database counter, the label sets it is exported with at 0 before their first event."""
    retried = [*throttling_codes(), *(str(c) for c, e in CODES.items() if e.error_class in RETRYABLE)]
    return {
        "late_failed": [(("error_code", str(code)),) for code in CODES],
        "deferred": [(("reason", reason),) for reason in (*throttling_codes(), *DEFERRAL_REASONS)],
        "retried": [(("error_code", code),) for code in dict.fromkeys(retried)],
        "contacts_opted_out": [(("reason", cause),) for cause in OPT_OUT_CAUSES],
    }


def _family(name: str, help_text: str, label_names: list[str], rows: list[tuple[list[str], int]]) -> Metric:
    metric = CounterMetricFamily(name, help_text, labels=label_names)
    for values, value in rows:
        metric.add_metric(values, value)
    return metric


def totals(snap: Snapshot) -> list[Metric]:
    """The alert rules' series: present from the first scrape, or from a domain's first queued row."""
    throttled = [
        (
            [code],
            snap.total("deferred", reason=code)
            + snap.total("retried", error_code=code)
            + snap.total("failed", error_code=code),
        )
        for code in throttling_codes()
    ]
    return [
        _family(
            "notify_outcomes",
            "Outcomes summed over domains and codes (sent, failed, late_failed, filtered, held, expired, "
            "cancelled), 0 before the first: the failure-rate alert's overall terms.",
            ["outcome"],
            [([outcome], snap.total(outcome)) for outcome in OUTCOMES],
        ),
        _family(
            "notify_domain_outcomes",
            "Sent and failed per domain, every code summed, from the domain's first queued row: the "
            "failure-rate alert's per-domain terms.",
            ["domain", "outcome"],
            [
                ([domain, outcome], snap.total(outcome, domain=domain))
                for domain in snap.domains()
                for outcome in DOMAIN_OUTCOMES
            ],
        ),
        _family(
            "notify_opt_outs",
            "Opt-outs as the opt-out alert counts them: contacts opting out (each once per change of "
            "mind) and sends refused because the contact had opted out.",
            ["kind"],
            [
                (["contact"], snap.total("contacts_opted_out")),
                (["blocked_send"], snap.total("filtered", reason="opted_out", stage="send")),
            ],
        ),
        _family(
            "notify_throttled",
            "Meta's rate-limit answers by code (deferred, retried or failed), 0 before the first: the "
            "throttling alert's terms.",
            ["error_code"],
            throttled,
        ),
    ]
