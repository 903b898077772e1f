"""boto3 clients, built lazily once per container and injectable for tests."""

from __future__ import annotations

import sys
import threading
from functools import cache
from typing import Any

import boto3
import botocore
from botocore.config import Config

# A User-Agent of our own, made once: botocore's default one is rebuilt from a dozen parts twice for
# every request, about a third of the client-side CPU of a request (a collect sends dozens).
USER_AGENT = (
    f"BatchBridge Boto3/{boto3.__version__} botocore/{botocore.__version__} "
    f"Python/{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
)
CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 4}, connect_timeout=5, read_timeout=20, user_agent=USER_AGENT
)
#: Added for :func:`bulk_client`: its request bodies are built and checked by the caller.
BULK_CONFIG = Config(parameter_validation=False)


# boto3's default session is not safe to build clients from in several threads at once (Lambda runs one
# thread; the local runtime runs many): creation is serialised, use is not.
_create = threading.Lock()


@cache
def client(service: str) -> Any:
    """The container's client of ``service``; its calls are metered for the batch being worked on."""
    from batchbridge import cost

    with _create:
        made = boto3.client(service, config=CLIENT_CONFIG)  # type: ignore[call-overload]
    cost.install(made)
    return made


@cache
def presigner() -> Any:
    """The S3 client that signs pre-signed URLs: Signature Version 4 always (S3 refuses version 2 in most
    regions, and a version-2 URL would be valid until its expiry even past the credentials' own)."""
    with _create:
        return boto3.client("s3", config=CLIENT_CONFIG.merge(Config(signature_version="s3v4")))


_prepared = threading.local()


@cache
def bulk_client(service: str) -> Any:
    """A client for bulk writes whose request bodies the caller serialises itself (:func:`send_prepared`):
    botocore's own walk over every attribute of every item (and its validation) costs several times what
    the JSON of the request does."""
    with _create:
        made = boto3.client(service, config=CLIENT_CONFIG.merge(BULK_CONFIG))  # type: ignore[call-overload]
    made.meta.events.register(f"before-call.{service}", _use_prepared_body)
    return made


def send_prepared(client: Any, method: str, body: bytes, **placeholder: Any) -> Any:
    """Call ``method`` of a :func:`bulk_client` with ``body`` as the request's JSON, already serialised;
    ``placeholder`` are the smallest parameters the call takes (botocore serialises those, then the body is
    swapped in before the request is signed, so it is what is signed and sent)."""
    _prepared.body = body
    try:
        return getattr(client, method)(**placeholder)
    finally:
        _prepared.body = None


def _use_prepared_body(params: dict[str, Any], **kwargs: Any) -> None:
    body = getattr(_prepared, "body", None)
    if body is not None:
        params["body"] = body


_local = threading.local()


def table(name: str) -> Any:
    """A DynamoDB Table resource; one per thread, as boto3 resources are not thread-safe."""
    tables: dict[str, Any] = _local.__dict__.setdefault("tables", {})
    if name not in tables:
        with _create:
            tables[name] = boto3.resource("dynamodb", config=CLIENT_CONFIG).Table(name)
    return tables[name]


def reset() -> None:
    """Forget cached clients (tests and the local runtime call this between stacks)."""
    client.cache_clear()
    presigner.cache_clear()
    bulk_client.cache_clear()
    _local.__dict__.pop("tables", None)
