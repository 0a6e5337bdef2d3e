"""What a send returns: one typed result for success and for every kind of failure."""

from __future__ import annotations

from dataclasses import dataclass

from notify_pipeline.whatsapp.errors import ErrorClass, lookup


@dataclass(frozen=True)
class ApiError:
    """A failed call: Meta's error, or an HTTP, network or response problem."""

    error_class: ErrorClass
    message: str
    code: int | None = None  # Meta's error.code; None when Meta gave none
    details: str | None = None  # Meta's error_data.details
    http_status: int | None = None
    subcode: int | None = None
    fbtrace_id: str | None = None
    # meta: Meta's error body. http: an HTTP error without one. bad_response: 200 without a message id.
    # connection: the request never left (refused, DNS, connect or pool timeout), so no attempt is used.
    # timeout_ambiguous: the request may have left and no usable answer came back (read timeout,
    # disconnect, reset, malformed answer): Meta may have accepted the message.
    kind: str = "meta"

    @property
    def label(self) -> str:
        """What goes into notifications.last_error_code: Meta's code, else the kind of failure."""
        if self.code is not None:
            return str(self.code)
        if self.kind == "http" and self.http_status is not None:
            return f"http_{self.http_status}"
        return self.kind

    @property
    def retryable(self) -> bool:
        return self.error_class in (ErrorClass.TRANSIENT, ErrorClass.THROTTLED)

    @property
    def min_retry_delay_s(self) -> float | None:
        entry = lookup(self.code)
        return entry.min_retry_delay_s if entry else None

    def describe(self) -> str:
        """A readable error_message: code, meaning, Meta's details."""
        entry = lookup(self.code)
        head = f"({self.code}) {entry.title}" if entry else self.message
        if self.code is not None and entry is None:
            head = f"({self.code}) {self.message}"
        return f"{head}: {self.details}" if self.details and self.details not in head else head


@dataclass(frozen=True)
class SendResult:
    """The answer to one send. `ok` means Meta accepted the message (not that it was delivered)."""

    latency_s: float
    http_status: int | None = None
    wamid: str | None = None
    wa_id: str | None = None
    message_status: str | None = None  # template pacing: accepted | held_for_quality_assessment | paused
    error: ApiError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.wamid is not None
