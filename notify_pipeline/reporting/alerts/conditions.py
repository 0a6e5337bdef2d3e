"""The alert conditions: pure functions from a reading and the thresholds to a Verdict.

A Verdict says whether the condition holds, and in words an operator can act on: what is wrong,
with the numbers, and the first thing to check (the runbook's quick fixes, with error codes
explained from the product's code table). When the condition does not hold the headline says
why, so a sensor tick in the UI reads "ok: 12 due now" or "quiet on purpose: paused".
"""

from __future__ import annotations

from typing import Any

from notify_pipeline.reporting.alerts.codes import fix, meaning
from notify_pipeline.reporting.alerts.readings import (
    LAST_STATUS_S,
    LEASE_S,
    META_PAIR_LIMIT,
    FailureReading,
    OptOutReading,
    QueueReading,
    ReceiptReading,
    Switches,
    ThrottleReading,
    WorkerReading,
)
from notify_pipeline.reporting.alerts.verdict import Verdict, duration, pct
from notify_pipeline.thresholds import Thresholds


def _switched_off(s: Switches) -> str | None:
    if not s.enabled:
        return "NOTIFICATION_WORKER_CRON_ENABLED is false (the environment kill switch)"
    if s.paused:
        return f"sending is paused in queue_control ({s.pause_reason or 'no reason given'})"
    if s.held:
        return f"the sender is held because Meta {s.held} (lift with `notify-pipeline resume --hold`)"
    return None


def _stuck_queue_check(r: QueueReading) -> str:
    off = _switched_off(r.switches)
    if off and not r.switches.enabled:
        return f"{off}: set it back to true (or unset it) if stopping was not intended."
    if off:
        return f"{off}: run resume_job or `notify-pipeline resume --reason ...` when the incident is over."
    if r.stale_claims:
        return (
            f"{r.stale_claims:,} claims are older than the {duration(LEASE_S)} lease (a worker died holding "
            "them): run sweep_locks_job or `notify-pipeline sweep --older-than 15m`, and check that "
            "sweep_locks_schedule is running."
        )
    return (
        "Are send runs launching and keeping up? Check `notify-pipeline status`, the "
        "due_notifications_sensor and the Dagster daemon; if runs are fine, sends are slower than "
        "arrivals (see the throttling alert)."
    )


def _queue_facts(r: QueueReading) -> tuple[str, ...]:
    return (
        f"{r.claimed:,} more are being sent by a live drain and {r.waiting:,} more wait for a later time "
        f"(deferred or scheduled): neither is counted. Claims past the lease: {r.stale_claims:,}.",
    )


def _queue_numbers(r: QueueReading) -> dict[str, Any]:
    oldest = round(r.oldest_due_s) if r.oldest_due_s is not None else None
    return {
        "due": r.due,
        "claimed": r.claimed,
        "stale_claims": r.stale_claims,
        "waiting": r.waiting,
        "oldest_due_s": oldest,
        "paused": r.switches.paused,
        "enabled": r.switches.enabled,
    }


def queue_depth(r: QueueReading, t: Thresholds) -> Verdict:
    """Due rows above thresholds.queue_depth (the lifecycle adds: for queue_depth_for_s)."""
    numbers = {**_queue_numbers(r), "threshold": t.queue_depth, "for_s": t.queue_depth_for_s}
    if r.due <= t.queue_depth:
        return Verdict(False, f"ok: {r.due:,} due now (alert above {t.queue_depth:,})", numbers=numbers)
    headline = f"{r.due:,} notifications are due now (alert above {t.queue_depth:,})"
    return Verdict(True, headline, _queue_facts(r), _stuck_queue_check(r), numbers)


def oldest_queued(r: QueueReading, t: Thresholds) -> Verdict:
    """The longest-due row has been due longer than thresholds.oldest_queued_s. Measured from its
    due time, not created_at: a row scheduled for tomorrow or deferred by quiet hours is not late."""
    numbers = {**_queue_numbers(r), "threshold_s": t.oldest_queued_s}
    limit = duration(t.oldest_queued_s)
    if r.oldest_due_s is None or r.oldest_due_s <= t.oldest_queued_s:
        return Verdict(
            False,
            f"ok: oldest due row waits {duration(r.oldest_due_s)} (alert above {limit})",
            numbers=numbers,
        )
    headline = f"The oldest due notification has waited {duration(r.oldest_due_s)} (alert above {limit})"
    return Verdict(True, headline, (f"{r.due:,} due now.", *_queue_facts(r)), _stuck_queue_check(r), numbers)


def failure_rate(r: FailureReading, t: Thresholds) -> Verdict:
    """failed / (sent + failed) above thresholds.failure_rate, overall or in any domain with at
    least failure_rate_min_volume finished rows. Figures as reporting/figures.py defines them:
    opt-outs, emergency-stop holds and expired rows are not counted."""
    sent = sum(s for s, _ in r.by_domain.values())
    failed = sum(f for _, f in r.by_domain.values())
    finished, window, limit = sent + failed, duration(r.window_s), pct(t.failure_rate)
    rate = failed / finished if finished else 0.0
    ranked = sorted(
        ((d, s, f, f / (s + f)) for d, (s, f) in r.by_domain.items() if s + f >= t.failure_rate_min_volume),
        key=lambda item: (-item[3], item[0]),
    )
    hot = [d for d, _, _, domain_rate in ranked if domain_rate > t.failure_rate]
    overall = finished >= t.failure_rate_min_volume and rate > t.failure_rate
    numbers = {
        "sent": sent,
        "failed": failed,
        "rate": round(rate, 4),
        "threshold": t.failure_rate,
        "window_s": r.window_s,
        "min_volume": t.failure_rate_min_volume,
        "hot_domains": hot,
        "failed_by_code": r.failed_by_code,
        "late_failed": r.late,
        "not_failures": r.not_failures,
    }
    if not (overall or hot):
        if finished < t.failure_rate_min_volume:
            text = f"no verdict: {finished:,} finished in the last {window} (needs {t.failure_rate_min_volume:,})"
        else:
            text = f"ok: failure rate {pct(rate)} over the last {window} (alert above {limit})"
        return Verdict(False, text, numbers=numbers)
    if overall:
        headline = f"Failure rate {pct(rate)} over the last {window}: {failed:,} of {finished:,} finished failed (alert above {limit})"
    else:
        headline = f"Failure rate above {limit} in {', '.join(hot)} over the last {window} (overall {pct(rate)}, {failed:,} of {finished:,})"
    worst = ", ".join(f"{d} {pct(dr)} ({f:,}/{s + f:,})" for d, s, f, dr in ranked[:3])
    codes = sorted(r.failed_by_code.items(), key=lambda item: (-item[1], item[0]))[:3]
    facts = [f"Worst domains: {worst}."] if worst else []
    facts += [f"Error code {code} x{count:,}: {meaning(code)}" for code, count in codes]
    if r.late:
        facts.append(
            f"{r.late:,} of the failures came late: Meta accepted the message, then its status webhook said failed."
        )
    facts.append("Opt-outs, emergency-stop holds and expired messages are not counted as failures.")
    if codes:
        top = codes[0][0]
        advice = f"{top}: {fix(top)}" if fix(top) else meaning(top)
        first = (
            f"The top error code, {advice} Once fixed, queue what can be sent again with "
            "retry_failed_job (dry run first, filtered by error code)."
        )
    else:
        first = "Group the failures by last_error_code (`notify-pipeline status`)."
    return Verdict(True, headline, tuple(facts), first, numbers)


def worker_health(r: WorkerReading, t: Thresholds) -> Verdict:
    """No NOTIFY_WORKER_START for worker_silence_s while sending is enabled, not paused, and work
    has been due at least that long. A worker switched off, paused or held is silent on purpose
    (the hold has its own alert: the failed run), and silence counts from a resume, so a send
    run's normal start after one is no fault."""
    limit = duration(t.worker_silence_s)
    numbers = {
        "last_start_age_s": r.last_start_age_s,
        "last_claim_age_s": r.last_claim_age_s,
        "due_unclaimed": r.due_unclaimed,
        "oldest_unclaimed_due_s": r.oldest_unclaimed_due_s,
        "threshold_s": t.worker_silence_s,
        "paused": r.switches.paused,
        "enabled": r.switches.enabled,
    }
    off = _switched_off(r.switches)
    if off:
        return Verdict(False, f"quiet on purpose: {off}", numbers=numbers)

    def recent(age: float | None) -> bool:
        return age is not None and age <= t.worker_silence_s

    if recent(r.last_start_age_s) or recent(r.last_claim_age_s):
        return Verdict(False, f"ok: last worker start {duration(r.last_start_age_s)} ago", numbers=numbers)
    if r.oldest_unclaimed_due_s is None or r.oldest_unclaimed_due_s <= t.worker_silence_s:
        return Verdict(
            False,
            f"ok: no worker start for {duration(r.last_start_age_s)}, but no work has been due longer than "
            f"{limit}",
            numbers=numbers,
        )
    silent = "ever started" if r.last_start_age_s is None else f"started for {duration(r.last_start_age_s)}"
    headline = (
        f"No send worker has {silent} while {r.due_unclaimed:,} notifications wait, due for up to "
        f"{duration(r.oldest_unclaimed_due_s)} (alert after {limit} of silence)"
    )
    first = (
        "Check NOTIFICATION_WORKER_CRON_ENABLED where the code location runs and the pause flag "
        "(`notify-pipeline status`), then that the Dagster daemon runs and due_notifications_sensor is "
        "on and not failing; a send run failing at start shows under Runs."
    )
    return Verdict(True, headline, (), first, numbers)


def opt_out_spike(r: OptOutReading, t: Thresholds) -> Verdict:
    """More than opt_outs_per_hour opt-outs in the last hour: contacts opting out plus sends
    blocked because the contact had opted out. Contacts, not events: a contact repeating STOP, or
    alternating STOP and START, counts once (readings.read_opt_outs)."""
    total = r.contacts + r.blocked_sends
    numbers = {
        "contacts": r.contacts,
        "blocked_sends": r.blocked_sends,
        "repeats": r.repeats,
        "causes": r.causes,
        "reasons": r.reasons,
        "threshold": t.opt_outs_per_hour,
        "window_s": r.window_s,
    }
    if total <= t.opt_outs_per_hour:
        return Verdict(
            False,
            f"ok: {total:,} opt-outs in the last {duration(r.window_s)} "
            f"(alert above {t.opt_outs_per_hour:,})",
            numbers=numbers,
        )
    headline = (
        f"{total:,} opt-outs in the last {duration(r.window_s)} (alert above {t.opt_outs_per_hour:,}): "
        f"{r.contacts:,} contacts opted out, {r.blocked_sends:,} sends blocked because the contact had opted out"
    )
    reasons = sorted(r.reasons.items(), key=lambda item: (-item[1], item[0]))[:3]
    facts = [f"Reasons: {', '.join(f'{why} {n:,}' for why, n in reasons)}."] if reasons else []
    if r.repeats:
        facts.append(
            f"{r.repeats:,} more opt-outs were the same contacts again (STOP repeated, or within an hour "
            "of their own START): not counted."
        )
    first = (
        "What was sent just before? Check recent campaigns and templates (campaign_id, template_name of "
        "the last hour's sends) and pause the campaign if it is the cause; blocked sends mean a producer "
        "keeps queuing to opted-out contacts."
    )
    return Verdict(True, headline, tuple(facts), first, numbers)


def throttling(r: ThrottleReading, t: Thresholds) -> Verdict:
    """More than throttled_per_minute of Meta's rate-limit errors in the last minute.

    Only Meta's codes count: they mean Meta refused sends and lowering our rate helps. Our own
    pair limiter's deferrals are reported beside them but not counted, because they are the limiter
    keeping one hot recipient under Meta's pair limit, which no throughput setting changes.
    """
    meta = sum(r.meta_by_code.values())
    numbers = {
        "meta_by_code": r.meta_by_code,
        "pair_limit": r.pair_limit,
        "hot_recipients": r.hot_recipients,
        "threshold": t.throttled_per_minute,
        "window_s": r.window_s,
    }
    window = duration(r.window_s)
    if meta <= t.throttled_per_minute:
        return Verdict(
            False,
            f"ok: {meta:,} rate-limit errors from Meta in the last {window} (alert above "
            f"{t.throttled_per_minute:,}); {r.pair_limit:,} pair-limit deferrals",
            numbers=numbers,
        )
    headline = (
        f"{meta:,} rate-limit errors from Meta in the last {window} (alert above {t.throttled_per_minute:,})"
    )
    codes = sorted(r.meta_by_code.items(), key=lambda item: (-item[1], item[0]))
    facts = [f"{code} x{count:,}: {meaning(code)}" for code, count in codes[:3]]
    facts.append(f"Our pair limiter also deferred {r.pair_limit:,} sends (not counted).")
    if r.hot_recipients:
        facts.append("Hot recipients: " + ", ".join(f"{wa} x{n:,}" for wa, n in r.hot_recipients) + ".")
    top = codes[0][0]
    if top == META_PAIR_LIMIT:
        first = (
            "Meta's pair limit: a few recipients get messages in bursts. Check the hot recipients and "
            "the producer messaging them; lowering throughput does not help."
        )
    else:
        first = (
            f"Lower throughput_per_s in the send runs' config (SendConfig); Meta's advice for {top}: "
            f"{fix(top) or meaning(top)} Then check pair-limit hot recipients."
        )
    return Verdict(True, headline, tuple(facts), first, numbers)


def no_receipts(r: ReceiptReading, t: Thresholds) -> Verdict:
    """At least no_receipts_min_sent messages sent in the window (older than the grace, so Meta
    had time to answer) still carry no status, and no status webhook at all arrived in the window:
    Meta's webhooks are not reaching us (a broken subscription, a wrong secret, serve down)."""
    window, grace = duration(r.window_s), duration(r.grace_s)
    last = (
        f"none in {LAST_STATUS_S / 86400:g} days"
        if r.last_status_age_s is None
        else f"{duration(r.last_status_age_s)} ago"
    )
    numbers = {
        "awaiting": r.awaiting,
        "statuses": r.statuses,
        "last_status_age_s": round(r.last_status_age_s) if r.last_status_age_s is not None else None,
        "min_sent": t.no_receipts_min_sent,
        "window_s": r.window_s,
        "grace_s": r.grace_s,
    }
    if r.statuses:
        return Verdict(
            False, f"ok: {r.statuses:,} status webhooks in the last {window} (last {last})", numbers=numbers
        )
    if r.awaiting < t.no_receipts_min_sent:
        return Verdict(
            False,
            f"no verdict: {r.awaiting:,} sent {grace} to {window} ago await a status "
            f"(needs {t.no_receipts_min_sent:,}); no status webhook in the last {window}",
            numbers=numbers,
        )
    headline = (
        f"No status webhook in the last {window} while {r.awaiting:,} messages sent {grace} to {window} ago "
        f"await one (last status webhook: {last})"
    )
    facts = (
        "Until statuses arrive again, delivered and read figures stand still and the failure rate "
        "misses late failures (they are counted as sent).",
    )
    first = (
        "Is `notify-pipeline serve` running and reachable from Meta over HTTPS (its log shows POST "
        "/webhooks/whatsapp)? Then check the app's webhook subscription: the callback URL and the "
        "`messages` field subscribed (Meta App Dashboard > WhatsApp > Configuration); and that "
        "WHATSAPP_APP_SECRET is the app's secret (a wrong one answers every POST with 401)."
    )
    return Verdict(True, headline, facts, first, numbers)
