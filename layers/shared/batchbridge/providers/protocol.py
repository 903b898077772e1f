"""What every provider call shares: the phase it belongs to, the context its errors are told in, and
one table that turns a vendor's answer into BatchBridge's typed errors.

A provider module says only what its vendor does differently (a 404 that means "not yet", an error
body inside a 200); everything else comes from :data:`DEFAULT_RULES`.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import StrEnum

from batchbridge.errors import (
    BatchBridgeError,
    BatchRejectedError,
    ConfigurationError,
    ProviderAuthError,
    ProviderJobFailedError,
    ProviderResponseError,
    ProviderUnavailableError,
    ResultsExpiredError,
)

MAX_VENDOR_TEXT = 1000  # the longest vendor text copied into any error message


class Phase(StrEnum):
    """What a call is for. The same HTTP status means different things in different phases: a 404 on a
    status read means the job is gone, on a token request that the endpoint is wrong."""

    AUTH = "auth"  # a step before the call itself: a token, a ticket, tenant discovery
    SUBMIT = "submit"
    STATUS = "status"
    RESULTS = "results"
    CANCEL = "cancel"
    LOOKUP = "lookup"  # find_submission
    CLEANUP = "cleanup"


@dataclass
class Operation:
    """The provider operation running now (one per entry point: submit, check, collect...).

    ``label`` prefixes every error the operation raises, so no call site has to say what it was doing.
    ``in_doubt`` is True from the moment the request that may take effect (the submit) goes out until an
    answer proves the vendor did not act on it (401, 429, or a status the adapter names as such).
    """

    label: str
    phase: Phase
    in_doubt: bool = False
    sent: int = 0  # requests answered during the operation
    committed: bool = False  # the request that may take effect was attempted


_current: ContextVar[Operation | None] = ContextVar("batchbridge_provider_operation", default=None)


def current_operation() -> Operation | None:
    """The operation running in this context, if any (None outside a provider entry point)."""
    return _current.get()


def enter(operation: Operation) -> object:
    return _current.set(operation)


def leave(token: object) -> None:
    _current.reset(token)  # type: ignore[arg-type]


def clip(text: str, limit: int = MAX_VENDOR_TEXT) -> str:
    """``text`` cut to ``limit`` characters, marked with an ellipsis when cut."""
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Problem:
    """What a vendor's error answer said, in the terms the table decides on.

    ``status`` is the HTTP status, or the vendor's own status where its error body carries one (iVvy's
    ``errorCode``, which may be 460-463 and may arrive inside an HTTP 200). ``code`` is the BatchBridge
    code recorded for it (``IVVY_24092``, ``OS1_400100000011``); ``text`` the vendor's words, clipped.
    ``detail`` carries a dialect fact the adapter decides on (iVvy's ``specificCode``).
    """

    status: int
    code: str
    text: str
    detail: int | None = None

    def describe(self) -> str:
        return f"HTTP {self.status}: {self.text}" if self.text else f"HTTP {self.status}"


@dataclass(frozen=True)
class Rule:
    """What an answer means: the error to raise and the words that say so. ``vendor_code`` records the
    vendor's own code (``Problem.code``) on the error instead of the error class's code."""

    error: type[BatchBridgeError]
    says: str
    vendor_code: bool = False

    def build(self, problem: Problem) -> BatchBridgeError:
        message = f"{self.says} ({problem.describe()})"
        if self.vendor_code:
            return self.error(message, code=problem.code)
        return self.error(message)


RuleKey = int | str  # an exact status, or "4xx" / "5xx" for a class


@dataclass(frozen=True)
class StatusRules:
    """Status -> rule, per phase, with ``"4xx"`` and ``"5xx"`` as fallbacks for their class. Anything the
    table does not name (a 1xx, a 3xx, an undocumented 2xx) breaks the vendor's documentation and is a
    :class:`ProviderResponseError`."""

    rules: Mapping[Phase, Mapping[RuleKey, Rule]] = field(default_factory=dict)

    def extend(self, overrides: Mapping[Phase, Mapping[RuleKey, Rule]]) -> StatusRules:
        """A copy with the given rules added or replaced (phase by phase, status by status)."""
        merged = {phase: dict(rules) for phase, rules in self.rules.items()}
        for phase, rules in overrides.items():
            merged.setdefault(phase, {}).update(rules)
        return StatusRules(merged)

    def rule(self, phase: Phase, status: int) -> Rule:
        rules = self.rules.get(phase, {})
        fallback = f"{status // 100}xx"
        found = rules.get(status) or rules.get(fallback)
        if found is None:
            return Rule(ProviderResponseError, "an answer the vendor does not document")
        return found


_TRANSIENT: dict[RuleKey, Rule] = {
    "5xx": Rule(ProviderUnavailableError, "the vendor failed to answer"),
    401: Rule(ProviderAuthError, "the credentials were refused", vendor_code=True),
    403: Rule(ProviderAuthError, "forbidden: the credentials do not allow this", vendor_code=True),
}

DEFAULT_RULES = StatusRules(
    {
        Phase.AUTH: {
            **_TRANSIENT,
            "4xx": Rule(ProviderAuthError, "the credentials were refused", vendor_code=True),
            404: Rule(ConfigurationError, "no such endpoint; check the connection's baseUrl"),
        },
        Phase.SUBMIT: {
            **_TRANSIENT,
            "4xx": Rule(BatchRejectedError, "the vendor refused the batch", vendor_code=True),
        },
        Phase.STATUS: {
            **_TRANSIENT,
            404: Rule(
                ProviderJobFailedError, "the vendor no longer knows this job; its outcome cannot be learned"
            ),
            "4xx": Rule(ProviderJobFailedError, "the vendor refused the status request", vendor_code=True),
        },
        Phase.RESULTS: {
            **_TRANSIENT,
            404: Rule(ResultsExpiredError, "the vendor no longer holds this job's results"),
            "4xx": Rule(ProviderJobFailedError, "the vendor refused the results request", vendor_code=True),
        },
        Phase.CANCEL: {
            **_TRANSIENT,
            "4xx": Rule(ProviderJobFailedError, "the vendor refused the cancel", vendor_code=True),
        },
        Phase.LOOKUP: {
            **_TRANSIENT,
            "4xx": Rule(ProviderResponseError, "the vendor refused the lookup"),
        },
        Phase.CLEANUP: {
            **_TRANSIENT,
            "4xx": Rule(ProviderResponseError, "the vendor refused the clean-up"),
        },
    }
)
