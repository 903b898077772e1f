"""The workflow's error vocabulary.

Every exception a task handler lets escape is seen by Step Functions under its class name, so the
state machine's ``Retry`` and ``Catch`` blocks match these names. Names never change casually.
"""

from __future__ import annotations

from typing import Any


class BatchBridgeError(Exception):
    """Base of every error BatchBridge raises on purpose."""

    code: str = "BatchBridgeError"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


# --- transient: the workflow retries these with backoff ------------------------------------------
class ProviderThrottledError(BatchBridgeError):
    """The provider answered 429; ``retry_after`` is its hint in seconds when it gave one."""

    code = "PROVIDER_THROTTLED"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ProviderUnavailableError(BatchBridgeError):
    """5xx, connection refused, or a timeout on a call that is safe to repeat."""

    code = "PROVIDER_UNAVAILABLE"


class ProviderResponseError(BatchBridgeError):
    """The provider answered with something its own documentation does not allow (bad JSON, missing
    fields). Retried a few times, as truncated bodies are usually transient; then the batch fails."""

    code = "PROVIDER_BAD_RESPONSE"


class ProviderNotReadyError(BatchBridgeError):
    """The provider is up but not taking work now (e.g. a tenant in maintenance). The workflow waits
    ``wait_seconds`` and asks again, within the batch deadline, instead of failing."""

    code = "PROVIDER_NOT_READY"

    def __init__(self, message: str, *, wait_seconds: float = 60.0) -> None:
        super().__init__(message)
        self.wait_seconds = wait_seconds


# --- terminal: the batch ends, with this error recorded --------------------------------------------
class ProviderAuthError(BatchBridgeError):
    """Credentials were refused, even after one fresh authentication."""

    code = "PROVIDER_AUTH_FAILED"


class BatchRejectedError(BatchBridgeError):
    """The provider refused the batch (or a chunk of it) with a client error it documents."""

    code = "BATCH_REJECTED"


class ProviderJobFailedError(BatchBridgeError):
    """The provider reports the job itself as failed."""

    code = "PROVIDER_JOB_FAILED"


class UnknownProviderStatusError(BatchBridgeError):
    """The provider reported a status outside its documented set: fail closed, never loop on it."""

    code = "UNKNOWN_PROVIDER_STATUS"


class ResultsExpiredError(BatchBridgeError):
    """The provider no longer holds the results (e.g. iVvy keeps them for two days)."""

    code = "RESULTS_EXPIRED"


class AmbiguousSubmitError(BatchBridgeError):
    """A submit may or may not have reached the provider; resubmitting could double the work."""

    code = "AMBIGUOUS_SUBMIT"


class SubmitUnconfirmedError(BatchBridgeError):
    """What an adapter's ``submit`` raises when the request went out and no answer proves whether the
    vendor took it: a 5xx, a read timeout, a connection dropped after sending, a cut-short or malformed
    body, or an accepting answer in a shape the vendor's documentation does not allow.

    Only an answer that proves the vendor did not take the request may be sent again: a 429
    (:class:`ProviderThrottledError`), a documented refusal (:class:`BatchRejectedError`,
    :class:`ProviderAuthError`), or a connection that failed before anything was sent
    (:class:`ProviderUnavailableError`). This one never is: the core asks the provider whether it holds
    the chunk (:meth:`Provider.find_submission`) and otherwise ends the batch NEEDS_ATTENTION naming it.
    """

    code = "SUBMIT_UNCONFIRMED"


class ConfigurationError(BatchBridgeError):
    """A connection secret or setting is missing or malformed."""

    code = "CONFIGURATION_ERROR"


# --- API-level -------------------------------------------------------------------------------------
class RequestError(BatchBridgeError):
    """A client error: carries the HTTP status and, where it applies, the field at fault."""

    def __init__(self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None):
        super().__init__(message, code=code)
        self.status = status
        self.details = details or []

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        return {"error": error}


class UnknownProviderError(BatchBridgeError):
    code = "UNKNOWN_PROVIDER"


class ConnectionNotFoundError(BatchBridgeError):
    code = "UNKNOWN_CONNECTION"


class BatchNotFoundError(BatchBridgeError):
    code = "BATCH_NOT_FOUND"


class IdempotencyConflictError(BatchBridgeError):
    code = "IDEMPOTENCY_KEY_REUSED"


class InvalidStateError(BatchBridgeError):
    """An operation that the batch's current status does not allow (e.g. cancelling a finished batch)."""

    code = "INVALID_STATE"


class InvalidTokenError(BatchBridgeError):
    """A paging token this API did not issue, or issued for another query."""

    code = "INVALID_TOKEN"


class CancelNotSupportedError(BatchBridgeError):
    code = "CANCEL_NOT_SUPPORTED"


RETRYABLE_ERRORS = (ProviderThrottledError, ProviderUnavailableError, ProviderResponseError)
