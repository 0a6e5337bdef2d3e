"""Meta's Cloud API error codes: what each means, how the sender treats it, and what to do.

This table is the single source of truth for error codes in the product: the client classifies
with it, the emulator answers with its HTTP statuses, and diagnostics and alerts explain codes
from it. A code that gets a treatment of its own (a held template, the pair limit's back-off, a
filtered outcome, a late re-queue) says so in a column here, and every place that treats it reads
the column (`codes_with`); the one code of the OUTSIDE_WINDOW class is the 24-hour window's. The
database's copies (migrations 0008 and 0009) are kept equal to the table by a test. Meanings
follow Meta's error-code reference; the operations runbook's table (131000, 131047, 135000,
132000) is wrong and is not used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class ErrorClass(StrEnum):
    """How the sender reacts to an error.

    ACCOUNT means the business account or the sender number itself is blocked, locked, unpaid,
    deleted or unregistered: every message would fail the same way, so the drain stops as a whole,
    the queue stays intact (no attempt used, nothing failed) and operators are alerted.
    """

    TRANSIENT = "transient"  # retry with backoff: Meta or the network had a bad moment
    THROTTLED = "throttled"  # a rate limit: slow down and retry; does not use up an attempt
    PERMANENT = "permanent"  # the request or recipient is wrong: fail now, never resend as is
    AUTH = "auth"  # token or permission: stop sending, keep the queue, alert
    ACCOUNT = "account"  # the account or sender number is blocked: stop the drain, keep the queue, alert
    OUTSIDE_WINDOW = "outside_24h_window"  # free-form text after 24 h of silence: needs a template
    TEMPLATE = "template"  # the template is missing, paused, disabled or filled wrongly


@dataclass(frozen=True)
class MetaError:
    code: int
    title: str
    error_class: ErrorClass
    fix: str
    http_status: int = 400
    # Shortest sensible wait before a retry, when Meta's guidance gives one (None: backoff decides).
    min_retry_delay_s: float | None = None
    # Throttling codes: how many times one row may be deferred for this code before it fails
    # (counted per code, in notifications.deferrals). The default of the bound; the environment
    # may override it (NOTIFY_MAX_DEFERRALS, see engine/policy.py).
    max_deferrals: int | None = None
    # Meta says never send this again as it is (a user's choice or block): `retry-failed` leaves
    # such rows alone unless told --include-permanent.
    never_retry: bool = False
    # Meta paused or disabled the template: the row is held (deferred, no attempt used) as a PAUSED
    # status holds it, and the template is marked paused (engine/outcomes.py, engine/store.py).
    holds_template: bool = False
    # The pair rate limit (one recipient messaged too often): waits 4^X s, X the row's own hits
    # (engine/backoff.py); its deferrals point the throttling alert at hot recipients.
    pair_limit: bool = False
    # The contact's no, given at Meta: a failed row counted as filtered, not failed
    # (reporting/figures.py; the counters of migration 0008).
    filtered: bool = False
    # Refused after acceptance (a status webhook) for a MARKETING template: the row is queued again
    # 24 hours on, at most max_deferrals times (the trigger of migration 0009).
    requeued_late: bool = False


T, R, P, A, W, TP, AC = (
    ErrorClass.TRANSIENT,
    ErrorClass.THROTTLED,
    ErrorClass.PERMANENT,
    ErrorClass.AUTH,
    ErrorClass.OUTSIDE_WINDOW,
    ErrorClass.TEMPLATE,
    ErrorClass.ACCOUNT,
)

_TABLE: tuple[MetaError, ...] = (
    # Authorization
    MetaError(0, "Authentication failed (token expired or invalidated)", A, "Issue a new access token.", 401),
    MetaError(
        3, "App lacks the capability or permission for this call", A, "Check the app's permissions.", 403
    ),
    MetaError(10, "Permission denied or removed", A, "Grant whatsapp_business_messaging to the app.", 403),
    MetaError(190, "Access token has expired", A, "Refresh WHATSAPP_ACCESS_TOKEN, then resume.", 401),
    MetaError(
        200, "Missing access token or API permission", A, "Check the token and the app's permissions.", 403
    ),
    # Throttling
    MetaError(4, "App reached its Graph API call rate limit", R, "Slow down; retry later.", 400, 60, 30),
    MetaError(
        80007, "WhatsApp Business Account reached its rate limit", R, "Slow down; retry later.", 400, 60, 30
    ),
    MetaError(
        80008, "Too many calls to this WhatsApp Business Account", R, "Slow down; retry later.", 400, 60, 30
    ),
    MetaError(613, "Calls to this API exceeded the rate limit", R, "Slow down; retry later.", 400, 60, 30),
    MetaError(
        130429,
        "Cloud API throughput reached for this phone number",
        R,
        "Lower the send rate of this sender number (default 80 msg/s).",
        400,
        1,
        100,
    ),
    MetaError(
        131048,
        "Spam rate limit: earlier messages were blocked or flagged",
        R,
        "Pause the campaign and review message quality.",
        400,
        3600,
        3,
    ),
    MetaError(
        131056,
        "Pair rate limit: too many messages to this recipient",
        R,
        "Wait before messaging this recipient again (about 1 per 6 s); others are unaffected.",
        400,
        1,
        12,
        pair_limit=True,
    ),
    MetaError(
        131064,
        "Messaging limited after template classification violations",
        R,
        "Wait for the enforcement period to end.",
        400,
        3600,
        3,
    ),
    MetaError(
        133016, "Too many registration or deregistration attempts", R, "Wait before retrying.", 400, 3600, 3
    ),
    # Integrity. 368 and 131031 block the whole account (account class); 130497 only blocks
    # recipients in some countries, so it fails those messages and the rest keep going.
    MetaError(
        368,
        "Temporarily blocked for policy violations",
        AC,
        "The account is restricted: review policy notices in Business Manager.",
        403,
    ),
    MetaError(
        130497, "Account may not message users in this country", P, "Country restriction on the account.", 403
    ),
    MetaError(
        131031, "Business account locked", AC, "The account is restricted or disabled: contact Meta.", 403
    ),
    # Transient failures on Meta's side
    MetaError(
        1,
        "Unknown API error (invalid request or server error)",
        T,
        "Check Meta's status page; fix the request if it persists.",
        500,
    ),
    MetaError(2, "API service temporarily unavailable", T, "Check Meta's status page; retry.", 503),
    MetaError(
        131000, "Something went wrong (unknown error)", T, "Retry; open a support ticket if it persists.", 500
    ),
    MetaError(131016, "Service temporarily unavailable", T, "Check Meta's status page; retry.", 503),
    MetaError(131057, "Business account in maintenance mode", T, "Retry in a minute.", 400, 60),
    MetaError(133004, "Server temporarily unavailable", T, "Check Meta's status page; retry.", 503),
    MetaError(
        133015, "Phone number recently deleted; deletion pending", T, "Retry after 5 minutes.", 400, 300
    ),
    MetaError(2494100, "Phone number in maintenance mode", T, "Retry in a few minutes.", 400, 300),
    # The request or the recipient
    # 33, 131037, 131042, 131045, 133010: the sender number or its account cannot send at all.
    MetaError(33, "The business phone number has been deleted", AC, "Check WHATSAPP_PHONE_NUMBER_ID."),
    MetaError(
        100, "Invalid parameter", P, "Fix the request: a field is unsupported, misspelled or too long."
    ),
    MetaError(
        130403,
        "The business has blocked this user",
        P,
        "Do not retry; unblock the user first.",
        never_retry=True,
    ),
    MetaError(
        130472,
        "User's number is part of an experiment",
        P,
        "Not sent by Meta's choice; do not retry.",
        never_retry=True,
    ),
    MetaError(131005, "Access denied", A, "Check the app's permissions.", 403),
    MetaError(131008, "Required parameter is missing", P, "Fix the request: add the missing field."),
    MetaError(131009, "Parameter value is not valid", P, "Fix the request: a value is malformed."),
    MetaError(
        131021, "Sender and recipient are the same number", P, "Do not message the business number itself."
    ),
    MetaError(
        131026,
        "Message undeliverable",
        P,
        "The number is not on WhatsApp, has not accepted the terms, or runs an old app.",
    ),
    MetaError(
        131030,
        "Recipient not in the allowed list (test number)",
        P,
        "Add the recipient to the test allow-list.",
    ),
    MetaError(131037, "Sender number has no approved display name", AC, "Get the display name approved."),
    MetaError(
        131042,
        "Business eligibility: payment method problem",
        AC,
        "Fix the billing method in Business Manager.",
    ),
    MetaError(131045, "Phone number registration error", AC, "Register the sender phone number."),
    MetaError(133010, "Phone number not registered", AC, "Register the sender phone number, then resume."),
    MetaError(
        131047,
        "More than 24 hours since the user last replied",
        W,
        "Free-form text is only allowed within 24 h of the user's last message: send a template.",
    ),
    MetaError(
        131049,
        "Not delivered to keep the ecosystem healthy (marketing cap)",
        R,
        "Wait at least 24 hours before sending this user marketing again.",
        400,
        86400,
        1,
        requeued_late=True,
    ),
    MetaError(
        131050,
        "User stopped marketing messages from this business",
        P,
        "Never retry; treat as an opt-out from marketing.",
        never_retry=True,
        filtered=True,
    ),
    MetaError(131051, "Unsupported message type", P, "Use a supported message type."),
    MetaError(131052, "Could not download media sent by the user", P, "Ask the user to resend the media."),
    MetaError(131053, "Could not upload the media in the message", P, "Fix the media type, URL or size."),
    MetaError(
        131063, "Marketing templates disabled for Cloud API on this account", P, "Enable marketing messages."
    ),
    MetaError(135000, "Generic user error in the request parameters", P, "Check the request syntax."),
    # Templates
    MetaError(
        132000,
        "Template parameter count does not match",
        TP,
        "Send exactly the variables the template defines (see whatsapp_templates.variables).",
    ),
    MetaError(
        132001,
        "Template does not exist in this language, or is not approved",
        TP,
        "Check the template name and language, and that Meta approved it.",
    ),
    MetaError(
        132005, "Template text too long after filling in variables", TP, "Shorten the variable values."
    ),
    MetaError(
        132007, "Template content violates a WhatsApp policy", TP, "Edit the template and resubmit it."
    ),
    MetaError(132008, "Template parameter value is not valid", TP, "Fix the variable values."),
    MetaError(132012, "Template variable values are formatted wrongly", TP, "Fix the parameter format."),
    MetaError(
        132015,
        "Template is paused for low quality",
        TP,
        "Improve the template or wait until Meta reinstates it; held rows go out after.",
        holds_template=True,
    ),
    MetaError(
        132016,
        "Template is disabled permanently",
        TP,
        "Create a new template; this one cannot be used.",
        holds_template=True,
    ),
    MetaError(132018, "Template parameters failed validation", TP, "Fix the template parameters."),
)

CODES: dict[int, MetaError] = {entry.code: entry for entry in _TABLE}


def lookup(code: int | None) -> MetaError | None:
    """The entry for a code; codes 200-299 share the API-permission entry."""
    if code is None:
        return None
    if code in CODES:
        return CODES[code]
    if 200 <= code <= 299:
        return CODES[200]
    return None


def classify(code: int | None, http_status: int | None = None) -> ErrorClass:
    """The class of an error: by Meta's code when it has one, else by HTTP status.

    Unknown codes are permanent (resending an unknown failure burns the queue) unless the HTTP
    status says the server or a limiter failed (5xx, 429), which is transient.
    """
    entry = lookup(code)
    if entry is not None:
        return entry.error_class
    if http_status is None or http_status == 429 or http_status >= 500:
        return ErrorClass.TRANSIENT
    if http_status in (401, 403):
        return ErrorClass.AUTH
    return ErrorClass.PERMANENT


def describe(code: int | str | None) -> str:
    """One line for operators: the code's meaning and the first thing to do."""
    try:
        entry = lookup(int(code)) if code is not None else None
    except ValueError:
        entry = None
    if entry is None:
        return f"code {code}: not a documented Meta error code" if code is not None else "no error code"
    return f"{entry.code} {entry.title} ({entry.error_class}): {entry.fix}"


def codes_with(treated: Callable[[MetaError], bool]) -> tuple[str, ...]:
    """The codes whose entry `treated` picks, as stored in last_error_code, in the table's order:
    e.g. `codes_with(lambda e: e.filtered)`."""
    return tuple(str(code) for code, entry in CODES.items() if treated(entry))


def the_code(treated: Callable[[MetaError], bool]) -> str:
    """The one code `treated` picks (a treatment the product gives to a single code)."""
    (code,) = codes_with(treated)
    return code


def throttling_codes() -> tuple[str, ...]:
    """Meta's rate-limit codes as stored in last_error_code (the throttling alert and metrics)."""
    return codes_with(lambda entry: entry.error_class is ErrorClass.THROTTLED)


def never_retry_codes() -> tuple[str, ...]:
    """Codes, as stored in last_error_code, that `retry-failed` leaves alone by default."""
    return codes_with(lambda entry: entry.never_retry)


def markdown_table() -> str:
    """The code table as Markdown, for docs/operations.md (a test keeps the two identical)."""
    lines = ["| code | meaning | class | what to do |", "|---|---|---|---|"]
    for entry in sorted(_TABLE, key=lambda e: (e.error_class.value, e.code)):
        lines.append(f"| {entry.code} | {entry.title} | {entry.error_class.value} | {entry.fix} |")
    return "\n".join(lines)
