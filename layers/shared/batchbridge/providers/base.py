"""The provider interface: submit, check, collect, cancel. One module per provider, registered by name."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from batchbridge import limits
from batchbridge.errors import CancelNotSupportedError, UnknownProviderError
from batchbridge.models import ChunkState, Connection, ErrorInfo, Outcome
from batchbridge.providers import load_adapters


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


class Provider(ABC):
    """Base for every provider adapter.

    An adapter is built per connection with an injected ``httpx.Client`` so tests and the local
    runtime point it at a simulator. Adapters raise the typed errors of ``batchbridge.errors`` only.
    """

    capabilities: ClassVar[Capabilities]
    job_model: ClassVar[type[Job]] = Job
    # Per-batch options the client may send as "options" in POST /batches (validated there).
    options_model: ClassVar[type[BaseModel]] = NoOptions

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

    def reload_connection(self) -> None:
        """Read the connection's secret again, past the container's cache: a provider that refuses
        credentials it took yesterday may be refusing a ticket or key someone has since rotated in the
        secret. A no-op for an adapter built without a loader (tests that hand it a ``Connection``)."""
        if self._reload is not None:
            self.connection = self._reload()

    @classmethod
    def validate_batch(cls, options: dict[str, Any], jobs: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
        """Checks that need the batch's options and its jobs together; ``[{"field", "message"}]`` problems.

        Runs at ``POST /batches`` after each job and the options passed their own models.
        """
        return []

    @abstractmethod
    def submit(self, chunk: ChunkInfo, jobs: Sequence[dict[str, Any]]) -> str:
        """Send one chunk; return the provider's reference for it. Never retries on its own."""

    @abstractmethod
    def check(self, chunk: ChunkInfo) -> StatusReport:
        """Ask the provider how the chunk stands."""

    @abstractmethod
    def collect(
        self, chunk: ChunkInfo, jobs: Sequence[dict[str, Any]], report: StatusReport | None
    ) -> Iterator[Outcome]:
        """Yield exactly one outcome per job of the chunk, in job order."""

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

    def callback_ref(self, body: Any) -> str | None:
        """The provider reference a callback body names, if the provider's callbacks name one."""
        return None

    def confirm_callback(self, chunk: ChunkInfo, body: Any) -> bool:
        """Given a callback body, say whether the chunk really finished (never trust the body alone)."""
        return self.check(chunk).state is not ChunkState.RUNNING


_REGISTRY: dict[str, type[Provider]] = {}


def register(cls: type[Provider]) -> type[Provider]:
    _REGISTRY[cls.capabilities.name] = cls
    return cls


def provider_class(name: str) -> type[Provider]:
    load_adapters()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise UnknownProviderError(f"unknown provider {name!r}; known providers: {known}") from None


def all_capabilities() -> list[Capabilities]:
    load_adapters()
    return [cls.capabilities for _, cls in sorted(_REGISTRY.items())]
