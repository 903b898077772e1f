"""The provider interface: submit, check, collect, cancel. One module per provider, registered by name.

The base class owns the protocol every vendor shares, so that a provider module holds its dialect alone
(paths, payloads, status words, result parsing):

* **Error context.** Each entry point (``submit``, ``check``, ``collect``, ``cancel``, ``find_submission``,
  ``confirm_callback``, ``cleanup``) runs as an :class:`~batchbridge.providers.protocol.Operation`: every
  error it raises is prefixed with what was being done ("iVvy submit (chunk 3)") and scrubbed of the
  connection's credentials and of every token or ticket the adapter holds, and every outcome ``collect``
  yields is scrubbed the same way. Adapters never pass a description around.
* **The submit contract.** Once the request that may take effect is out (``request(..., commit=True)``),
  any failure that does not prove the vendor refused it -- a 5xx, a dropped or timed-out answer, a body
  cut short or in a shape the documentation does not allow -- leaves ``submit`` as
  :class:`~batchbridge.errors.SubmitUnconfirmedError`. Only a connect that failed, a step before the
  submit (a token, a tenant lookup), a 429 or a documented refusal may be sent again.
* **One status table.** :meth:`Provider.check_answer` turns any answer into the typed error its phase
  calls for (:data:`~batchbridge.providers.protocol.DEFAULT_RULES`); an adapter overrides
  :meth:`Provider.vendor_problem` (how its error bodies read) and :meth:`Provider.decide` (its exceptions).
* **Issued credentials.** :meth:`Provider.authorized` runs a call with the adapter's current token, and on
  a 401 forgets it, obtains a new one and repeats the call once; :meth:`Provider.client_credentials_token`
  is the OAuth client-credentials request both OAuth vendors use.
* **Connection settings.** :meth:`Provider.configured` validates ``settings`` with the adapter's pydantic
  model once per connection, with errors that name the setting and never echo a value.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any, ClassVar, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from batchbridge import limits
from batchbridge.errors import (
    BatchBridgeError,
    CancelNotSupportedError,
    ConfigurationError,
    ProviderAuthError,
    ProviderResponseError,
    ProviderThrottledError,
    ProviderUnavailableError,
    SubmitUnconfirmedError,
    UnknownProviderError,
)
from batchbridge.models import ChunkState, Connection, ErrorInfo, Outcome
from batchbridge.providers import load_adapter, load_adapters
from batchbridge.providers.auth import TOKENS, Token, keep_seconds
from batchbridge.providers.http import decode_json, retry_after_seconds, send
from batchbridge.providers.protocol import (
    DEFAULT_RULES,
    Operation,
    Phase,
    Problem,
    Rule,
    StatusRules,
    clip,
    current_operation,
    enter,
    leave,
)
from batchbridge.providers.settings import ProviderSettings
from batchbridge.redact import REDACTED, scrub


class Capabilities(BaseModel):
    """What a provider declares about itself; served by ``GET /providers``."""

    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True)

    name: str
    title: str
    max_jobs_per_submit: int
    max_jobs_per_batch: int = limits.MAX_JOBS_PER_BATCH
    supports_callback: bool = False
    supports_cancel: bool = False
    min_poll_seconds: float
    max_poll_seconds: float = 1800
    default_deadline_seconds: int = 6 * 3600
    max_deadline_seconds: int = 24 * 3600
    result_retention_seconds: int | None = None
    max_concurrency: int = 4


class Job(BaseModel):
    """Fields every job may carry. Providers subclass this with their own required fields."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    client_ref: str | None = Field(default=None, alias="clientRef", max_length=256)


class NoOptions(BaseModel):
    """A provider without per-batch options accepts none."""

    model_config = ConfigDict(extra="forbid")


class ChunkInfo(BaseModel):
    """What a provider needs to know about the chunk it is asked to act on."""

    batch_id: str
    index: int
    first_job_index: int
    provider_ref: str | None = None
    callback_url: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)  # the batch's provider options


class StatusReport(BaseModel):
    """One status check of one chunk, in canonical terms."""

    state: ChunkState  # RUNNING, COMPLETED or FAILED
    provider_status: str  # the provider's own word, kept for people reading the batch
    progress: float | None = None  # percent complete, when the provider tells
    error: ErrorInfo | None = None  # set when state is FAILED
    retry_after: float | None = None
    wait_hint_seconds: float | None = None  # e.g. a tenant in maintenance: ask again after this
    detail: dict[str, Any] = Field(default_factory=dict)  # small provider facts collect() may need


S = TypeVar("S", bound=ProviderSettings)

# Entry points run as operations, and the phase each belongs to.
_ENTRY_POINTS: dict[str, Phase] = {
    "submit": Phase.SUBMIT,
    "check": Phase.STATUS,
    "confirm_callback": Phase.STATUS,
    "collect": Phase.RESULTS,
    "cancel": Phase.CANCEL,
    "find_submission": Phase.LOOKUP,
    "cleanup": Phase.CLEANUP,
}
_PHASE_WORDS = {
    Phase.SUBMIT: "submit",
    Phase.STATUS: "status",
    Phase.RESULTS: "results",
    Phase.CANCEL: "cancel",
    Phase.LOOKUP: "submission lookup",
    Phase.CLEANUP: "clean-up",
    Phase.AUTH: "sign-in",
}
# What an answer that may have been acted on turns into when it fails (see the submit contract).
_UNCONFIRMED_IF_IN_DOUBT = (ProviderUnavailableError, ProviderResponseError)


class Provider(ABC):
    """Base for every provider adapter.

    An adapter is built per connection with an injected ``httpx.Client`` so tests and the local
    runtime point it at a simulator. Adapters raise the typed errors of ``batchbridge.errors`` only.
    """

    capabilities: ClassVar[Capabilities]
    job_model: ClassVar[type[Job]] = Job
    # Per-batch options the client may send as "options" in POST /batches (validated there).
    options_model: ClassVar[type[BaseModel]] = NoOptions
    # The connection's ``settings``, validated (see :meth:`configured`).
    settings_model: ClassVar[type[ProviderSettings]] = ProviderSettings
    # The status-to-error table; a module extends DEFAULT_RULES with its vendor's exceptions.
    status_rules: ClassVar[StatusRules] = DEFAULT_RULES
    # Answers that prove the vendor did not act on a request (so a submit they answer is not in doubt).
    not_taken_statuses: ClassVar[frozenset[int]] = frozenset({401, 429})
    # Settings that hold secrets (older connections keep some there): scrubbed like credentials.
    secret_settings: ClassVar[tuple[str, ...]] = ()
    # Renew an issued token this many seconds before it expires (but use it at least half its life).
    token_margin_seconds: ClassVar[float] = 60.0

    def __init__(
        self,
        connection: Connection,
        client: httpx.Client,
        *,
        reload: Callable[[], Connection] | None = None,
    ) -> None:
        self.connection = connection
        self.client = client
        self._reload = reload
        self._configured: dict[type[ProviderSettings], ProviderSettings] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, phase in _ENTRY_POINTS.items():
            method = cls.__dict__.get(name)
            if method is not None and not getattr(method, "_operation", False):
                setattr(cls, name, _as_operation(phase, method))

    # -- configuration -------------------------------------------------------------------------------
    def reload_connection(self) -> None:
        """Read the connection's secret again, past the container's cache: a provider that refuses
        credentials it took yesterday may be refusing a ticket or key someone has since rotated in the
        secret. A no-op for an adapter built without a loader (tests that hand it a ``Connection``)."""
        if self._reload is not None:
            self.connection = self._reload()
            self._configured.clear()

    def configured(self, model: type[S]) -> S:
        """The connection's settings validated by ``model`` (once per connection); a
        :class:`ConfigurationError` naming each bad setting, never its value, otherwise."""
        found = self._configured.get(model)
        if found is None:
            try:
                found = model.model_validate(self.connection.settings)
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
                )
                raise ConfigurationError(
                    f"connection {self.connection.name!r}: invalid settings for "
                    f"{self.capabilities.name} ({problems})"
                ) from None
            self._configured[model] = found
        assert isinstance(found, model)
        return found

    @property
    def base_url(self) -> str:
        """The connection's ``baseUrl`` without a trailing slash; an http(s) URL or a ConfigurationError."""
        base = self.connection.base_url.strip().rstrip("/")
        if not base.startswith(("https://", "http://")):
            raise ConfigurationError(f"connection {self.connection.name!r}: baseUrl must be an http(s) URL")
        return base

    # -- what must never be written ------------------------------------------------------------------
    def secret_values(self) -> list[str]:
        """Every credential value this adapter knows now: the connection's credentials, secret settings,
        and the tokens or tickets it holds. :func:`~batchbridge.redact.scrub` removes them from every text
        an operation raises or yields."""
        values = [v.get_secret_value() for v in self.connection.credentials.values()]
        values += [
            str(self.connection.settings[k]) for k in self.secret_settings if self.connection.settings.get(k)
        ]
        # A connection too broken to say which credential it uses holds none live.
        with contextlib.suppress(BatchBridgeError):
            values += self.live_credentials()
        return [v for v in values if v]

    def live_credentials(self) -> list[str]:
        """Tokens or tickets the adapter holds now (default: the one cached under :meth:`token_key`)."""
        key = self.token_key()
        live = TOKENS.live(key) if key is not None else None
        return [live] if live else []

    # -- issued credentials --------------------------------------------------------------------------
    def token_key(self) -> Hashable | None:
        """Where this connection's issued credential is cached; None for a vendor that issues none."""
        return None

    def fetch_token(self) -> Token:
        """Obtain a new credential from the vendor (adapters that issue tokens implement this)."""
        raise ConfigurationError(f"{self.capabilities.title} issues no tokens")

    def credential(self) -> str:
        """The credential to send now: the cached one, or a new one when it is due for renewal."""
        key = self.token_key()
        if key is None:
            raise ConfigurationError(f"{self.capabilities.title} issues no tokens")
        return TOKENS.get(key, self.fetch_token)

    def forget_credential(self, used: str) -> None:
        """The vendor refused ``used``: drop it so the next :meth:`credential` obtains a new one."""
        key = self.token_key()
        if key is not None:
            TOKENS.forget(key, used)

    def authorized(self, attempt: Callable[[str], httpx.Response]) -> httpx.Response:
        """Run ``attempt`` with the current credential; on a 401 forget it, obtain a new one and repeat
        once (a 401 means the vendor did not act, so even a submit may be repeated); a second 401 is a
        :class:`ProviderAuthError`."""
        used = self.credential()
        response = attempt(used)
        if response.status_code != 401:
            return response
        self.forget_credential(used)
        used = self.credential()
        response = attempt(used)
        if response.status_code == 401:
            self.forget_credential(used)
            problem = self.problem(response)
            raise ProviderAuthError(
                f"the vendor refused a fresh credential for connection {self.connection.name!r} "
                f"({problem.describe()})",
                code=problem.code,
            )
        return response

    def client_credentials_token(
        self,
        url: str,
        *,
        content: bytes,
        headers: dict[str, str],
        read: Callable[[Any], tuple[str, float]],
    ) -> Token:
        """The OAuth client-credentials exchange: POST ``content`` to ``url``, check the answer as a
        sign-in (401/403/4xx refuse the credentials, 404 is a wrong baseUrl), and let ``read`` take the
        token and its lifetime in seconds from the JSON. The body is never quoted in an error."""
        started = time.monotonic()
        response = self.request("POST", url, content=content, headers=headers)
        self.check_answer(response, Phase.AUTH, step="token request")
        try:
            value, expires_in = read(self.read_json(response, auth=True))
        except ProviderResponseError as exc:
            raise ProviderResponseError(f"token answer: {exc.message}") from None
        return Token(value, started + keep_seconds(expires_in, self.token_margin_seconds))

    # -- calls ---------------------------------------------------------------------------------------
    def request(self, method: str, url: str, *, commit: bool = False, **kwargs: Any) -> httpx.Response:
        """One HTTP request. ``commit=True`` marks the request that may take effect (the submit): from
        its answer on, the operation is in doubt unless the status proves the vendor did not act."""
        operation = current_operation()
        if operation is not None and commit:
            operation.committed = True
        response = send(lambda: self.client.request(method, url, **kwargs), commit=commit)
        if operation is not None:
            operation.sent += 1
            if commit:
                operation.in_doubt = response.status_code not in self.not_taken_statuses
        return response

    def read_json(self, response: httpx.Response, *, auth: bool = False) -> Any:
        """The answer's JSON; ``auth=True`` for credential endpoints, whose bodies are never quoted."""
        parsed = _parsed(response)
        return decode_json(response, quote=not auth) if parsed is _NOT_JSON else parsed

    def vendor_problem(self, body: Any, status: int) -> Problem | None:
        """How the vendor's error body reads; None when ``body`` is not one. The default takes a
        ``message`` string."""
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            return Problem(status, self.http_code(status), clip(body["message"]))
        return None

    def error_in_success(self, body: Any, status: int) -> Problem | None:
        """An error body inside a 2xx answer, for vendors that send them (default: none)."""
        return None

    def http_code(self, status: int) -> str:
        return f"{self.capabilities.name.upper()}_HTTP_{status}"

    def problem(self, response: httpx.Response) -> Problem:
        """What an answer says went wrong, as far as its body tells."""
        body = _parsed(response)
        found = self.vendor_problem(body, response.status_code) if body not in (None, _NOT_JSON) else None
        return found or Problem(response.status_code, self.http_code(response.status_code), "")

    def answer_problem(
        self, response: httpx.Response, phase: Phase, *, ok: frozenset[int] = frozenset({200})
    ) -> Problem | None:
        """None for an ``ok`` answer without an error body, else what went wrong."""
        status = response.status_code
        if status not in ok:
            if phase is Phase.AUTH and 200 <= status < 300:
                return Problem(status, self.http_code(status), "")  # nothing of a sign-in answer is quoted
            return self.problem(response)
        if phase is Phase.AUTH:
            return None
        body = _parsed(response)
        return None if body is _NOT_JSON else self.error_in_success(body, status)

    def decide(self, problem: Problem, phase: Phase) -> Rule:
        """The rule for a vendor's problem in ``phase``; adapters override it for their exceptions."""
        return self.status_rules.rule(phase, problem.status)

    def check_answer(
        self,
        response: httpx.Response,
        phase: Phase,
        *,
        ok: frozenset[int] = frozenset({200}),
        step: str | None = None,
    ) -> None:
        """Return when the answer has an ``ok`` status and no error body; raise what it means otherwise.

        A 429 is :class:`ProviderThrottledError` with the vendor's Retry-After; every other status is
        decided by :meth:`decide` in this phase.
        """
        problem = self.answer_problem(response, phase, ok=ok)
        if problem is None:
            return
        prefix = f"{step}: " if step else ""
        if problem.status == 429:
            raise ProviderThrottledError(
                f"{prefix}throttled ({problem.describe()})", retry_after=retry_after_seconds(response)
            )
        error = self.decide(problem, phase).build(problem)
        if prefix:
            error.message = prefix + error.message
            error.args = (error.message,)
        raise error

    # -- descriptions --------------------------------------------------------------------------------
    def describe(self, phase: Phase, chunk: ChunkInfo | None) -> str:
        """How errors of an operation begin, e.g. ``iVvy results (chunk 2, 5f0c...)``."""
        where = ""
        if chunk is not None:
            ref = f", {chunk.provider_ref}" if chunk.provider_ref else ""
            where = f" (chunk {chunk.index}{ref})"
        return f"{self.capabilities.title} {_PHASE_WORDS[phase]}{where}"

    def finish_error(self, operation: Operation, exc: BatchBridgeError) -> BatchBridgeError:
        """The error as it leaves an operation: a submit in doubt becomes unconfirmed, the message is
        prefixed with the operation and scrubbed of every credential the adapter knows."""
        if (
            operation.phase is Phase.SUBMIT
            and operation.in_doubt
            and isinstance(exc, _UNCONFIRMED_IF_IN_DOUBT)
        ):
            unconfirmed = SubmitUnconfirmedError(
                f"the request went out and this answer does not prove the vendor refused it: {exc.message}"
            )
            unconfirmed.__cause__ = exc
            exc = unconfirmed
        elif (
            operation.phase is Phase.SUBMIT
            and isinstance(exc, ProviderResponseError)
            and operation.sent > 0
            and not operation.committed
        ):
            # A garbled answer to a request before the submit went out (a token, a tenant lookup): nothing
            # was sent, so it is safe to send -- and must not read as an ambiguous submit.
            unavailable = ProviderUnavailableError(f"before the submit was sent: {exc.message}")
            unavailable.__cause__ = exc
            exc = unavailable
        message = (
            exc.message if exc.message.startswith(operation.label) else f"{operation.label}: {exc.message}"
        )
        exc.message = scrub(message, self.secret_values())
        exc.args = (exc.message,)
        return exc

    def finish_outcome(
        self, outcome: Outcome, secrets: Sequence[str], needles: Sequence[str] | None = None
    ) -> Outcome:
        """An outcome as it leaves ``collect``: vendor text in it scrubbed of credentials. ``needles`` are
        the secrets as they would appear in the response's JSON (:func:`secret_needles`); ``collect``'s
        wrapper works them out once for all of a chunk's outcomes."""
        error = outcome.error
        if error is not None:
            message = scrub(error.message, secrets)
            if message != error.message:
                outcome.error = ErrorInfo(code=error.code, message=message)
        if outcome.detail:
            detail = scrub(outcome.detail, secrets)
            if detail != outcome.detail:
                outcome.detail = detail
        if outcome.response is not None and secrets:
            text = outcome.response_json() or ""
            if any(needle in text for needle in (secret_needles(secrets) if needles is None else needles)):
                outcome.response = _without(outcome.response, _longest_first(secrets))
        return outcome

    # -- the interface -------------------------------------------------------------------------------
    @classmethod
    def validate_batch(cls, options: dict[str, Any], jobs: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
        """Checks that need the batch's options and its jobs together; ``[{"field", "message"}]`` problems.

        Runs at ``POST /batches`` after each job and the options passed their own models.
        """
        return []

    @abstractmethod
    def submit(self, chunk: ChunkInfo, jobs: Sequence[dict[str, Any]]) -> str:
        """Send one chunk; return the provider's reference for it. Never retries on its own.

        Raises :class:`ProviderThrottledError` (429), :class:`BatchRejectedError`,
        :class:`ProviderAuthError` or :class:`ConfigurationError` (documented refusals: nothing taken),
        :class:`ProviderUnavailableError` only when the submit request provably never went out, and
        :class:`SubmitUnconfirmedError` for every other failure after it did.
        """

    @abstractmethod
    def check(self, chunk: ChunkInfo) -> StatusReport:
        """Ask the provider how the chunk stands."""

    @abstractmethod
    def collect(
        self, chunk: ChunkInfo, jobs: Sequence[dict[str, Any]], report: StatusReport | None
    ) -> Iterator[Outcome]:
        """Yield exactly one outcome per job of the chunk, in job order. A job whose result cannot be
        told apart from another's is never credited: it is ``not_processed`` with a code saying why."""

    def cancel(self, chunk: ChunkInfo) -> bool:
        """Cancel the chunk at the provider; True when the provider confirmed it."""
        raise CancelNotSupportedError(f"{self.capabilities.name} has no cancel operation")

    def find_submission(self, chunk: ChunkInfo) -> str | None:
        """The provider's reference for this chunk if the provider shows that it accepted it, else None.

        The core asks this only when a submit's answer was lost (the request went out, no usable answer
        came back) or an earlier attempt stopped while the chunk was being submitted. A reference found
        here is recorded as if ``submit`` had returned it, so the batch carries on without sending the
        chunk again. None means "cannot tell" -- the default, for providers that cannot list what they
        hold -- and the batch ends NEEDS_ATTENTION naming the chunk. "Not found" must also answer None,
        never a signal to resubmit: a request that timed out may still be in flight at the provider.
        Only a match that names this very chunk (e.g. a context string the submit sent) counts, and
        more than one match answers None too. Errors raised here are treated as "cannot tell".
        """
        return None

    def cleanup(self, chunk: ChunkInfo) -> None:
        """Remove what the provider still keeps for a chunk whose outcomes are recorded, where the
        connection asks for that (default: nothing to do). The core calls it after the chunk is
        COLLECTED, best effort: a failure here is logged and changes no outcome."""
        return

    def callback_ref(self, body: Any) -> str | None:
        """The provider reference a callback body names, if the provider's callbacks name one."""
        return None

    def confirm_callback(self, chunk: ChunkInfo, body: Any) -> bool:
        """Given a callback body, say whether the chunk really finished (never trust the body alone)."""
        return self.check(chunk).state is not ChunkState.RUNNING


_NOT_JSON = object()


def _parsed(response: httpx.Response) -> Any:
    """The answer's JSON, parsed once however many times it is read (``_NOT_JSON`` when it is not)."""
    cached = getattr(response, "_batchbridge_json", None)
    if cached is None:
        try:
            cached = json.loads(response.content)
        except (json.JSONDecodeError, UnicodeDecodeError):
            cached = _NOT_JSON
        if cached is None:
            cached = _NULL
        response._batchbridge_json = cached  # type: ignore[attr-defined]
    return None if cached is _NULL else cached


_NULL = object()


class _Running:
    """Run a step of an operation: in its context, its errors finished on the way out. (A class, not a
    generator-based context manager: collect's wrapper enters one for every outcome.)"""

    __slots__ = ("operation", "provider", "token")

    def __init__(self, provider: Provider, operation: Operation) -> None:
        self.provider = provider
        self.operation = operation

    def __enter__(self) -> None:
        self.token = enter(self.operation)

    def __exit__(self, kind: object, exc: BaseException | None, trace: object) -> None:
        try:
            if isinstance(exc, BatchBridgeError):
                final = self.provider.finish_error(self.operation, exc)
                if final is not exc:
                    raise final from exc
        finally:
            leave(self.token)


def _as_operation(phase: Phase, method: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap an entry point so it runs as an operation (see the module doc)."""
    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def generator(self: Provider, chunk: ChunkInfo, *args: Any, **kwargs: Any) -> Iterator[Any]:
            operation = Operation(self.describe(phase, chunk), phase)
            inner = method(self, chunk, *args, **kwargs)
            secrets: list[str] | None = None
            needles: tuple[str, ...] = ()
            while True:
                with _Running(self, operation):
                    try:
                        item = next(inner)
                    except StopIteration:
                        return
                if isinstance(item, Outcome):
                    if secrets is None:
                        secrets = self.secret_values()
                        needles = secret_needles(secrets)
                    item = self.finish_outcome(item, secrets, needles)
                yield item

        generator._operation = True  # type: ignore[attr-defined]
        return generator

    @functools.wraps(method)
    def call(self: Provider, chunk: ChunkInfo, *args: Any, **kwargs: Any) -> Any:
        with _Running(self, Operation(self.describe(phase, chunk), phase)):
            return method(self, chunk, *args, **kwargs)

    call._operation = True  # type: ignore[attr-defined]
    return call


def _longest_first(secrets: Sequence[str]) -> list[str]:
    """The secrets worth replacing (six characters or more), longest first so that a secret holding
    another is replaced whole."""
    return sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)


def secret_needles(secrets: Sequence[str]) -> tuple[str, ...]:
    """What each secret looks like inside a response's JSON: as it is and, where JSON escapes some of its
    characters (quotes, backslashes, control characters), escaped."""
    needles: set[str] = set()
    for secret in _longest_first(secrets):
        needles.add(secret)
        needles.add(_json_text(secret)[1:-1])
    return tuple(needles)


_json_text = json.JSONEncoder(ensure_ascii=False).encode


def _without(value: Any, secrets: Sequence[str]) -> Any:
    """``value`` with every exact secret in its strings (keys too) replaced: vendor responses kept on
    outcomes. ``secrets`` are :func:`_longest_first`."""
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {_without(k, secrets): _without(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_without(v, secrets) for v in value]
    return value


_REGISTRY: dict[str, type[Provider]] = {}


def register(cls: type[Provider]) -> type[Provider]:
    _REGISTRY[cls.capabilities.name] = cls
    return cls


def provider_class(name: str) -> type[Provider]:
    """The adapter registered as ``name``; its module is imported on first use, and no other adapter's."""
    if name not in _REGISTRY and not load_adapter(name):
        load_adapters()  # for the message: every provider there is
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise UnknownProviderError(f"unknown provider {name!r}; known providers: {known}") from None


def all_capabilities() -> list[Capabilities]:
    load_adapters()
    return [cls.capabilities for _, cls in sorted(_REGISTRY.items())]
