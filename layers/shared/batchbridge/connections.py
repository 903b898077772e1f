"""Connections: named Secrets Manager secrets holding a provider's base URL, credentials and settings."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import httpx
from botocore.exceptions import ClientError
from pydantic import ValidationError

from batchbridge import aws
from batchbridge.config import get_settings
from batchbridge.errors import ConfigurationError, ConnectionNotFoundError
from batchbridge.models import Connection
from batchbridge.providers.base import Provider, provider_class
from batchbridge.providers.http import new_client

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
#: How long a container keeps a connection's secret before reading it again; a provider's 401 re-reads it
#: at once (``fresh``), so a rotated credential is picked up on the first call it fails.
CACHE_SECONDS = 300
_secrets: SecretsProvider | None = None
_http = None


def _secrets_provider() -> SecretsProvider:
    """The container's Powertools Secrets Manager provider (its cache is the connections' cache), on the
    container's metered client."""
    global _secrets
    if _secrets is None:
        from aws_lambda_powertools.utilities.parameters import SecretsProvider

        _secrets = SecretsProvider(boto3_client=aws.client("secretsmanager"))
    return _secrets


def secret_name(name: str) -> str:
    return get_settings().connection_secret_prefix + name


def load_connection(name: str, *, fresh: bool = False) -> Connection:
    """Read and validate a connection secret; cached for :data:`CACHE_SECONDS` per container unless
    ``fresh`` (read again now, and cached from then)."""
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

    if not NAME_PATTERN.match(name):
        raise ConnectionNotFoundError(f"connection name {name!r} is not valid")
    try:
        raw = _secrets_provider().get(secret_name(name), max_age=CACHE_SECONDS, force_fetch=fresh)
    except GetParameterError as exc:
        # Powertools wraps what the read raised; a missing secret is an unknown connection, the rest
        # (throttling, access denied) is raised as the client raised it.
        cause = exc.__context__
        if isinstance(cause, ClientError):
            if cause.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                raise ConnectionNotFoundError(f"unknown connection {name!r}") from None
            raise cause from None
        raise
    if not isinstance(raw, str | bytes):
        raise ConfigurationError(f"connection {name!r}: the secret is not text")
    return parse_connection(name, raw)


def parse_connection(name: str, raw: str | bytes) -> Connection:
    try:
        data: Any = json.loads(raw)
    except json.JSONDecodeError:
        raise ConfigurationError(f"connection {name!r}: the secret is not JSON") from None
    if not isinstance(data, dict):
        raise ConfigurationError(f"connection {name!r}: the secret must be a JSON object")
    try:
        return Connection.model_validate({**data, "name": name})
    except ValidationError as exc:
        # Name the fields, never echo the values: they may be credentials.
        fields = ", ".join(".".join(str(p) for p in e["loc"]) + f" ({e['msg']})" for e in exc.errors())
        raise ConfigurationError(f"connection {name!r}: invalid secret: {fields}") from None


def build_provider(connection: Connection) -> Provider:
    global _http
    if _http is None:
        read = get_settings().provider_read_timeout
        _http = new_client(httpx.Timeout(connect=5.0, read=read, write=read, pool=5.0))
    return provider_class(connection.provider)(
        connection, _http, reload=lambda: load_connection(connection.name, fresh=True)
    )


def clear_cache() -> None:
    """Forget every cached secret and the shared HTTP client (a test's or a rotation's fresh start)."""
    global _http, _secrets
    if _secrets is not None:
        _secrets.clear_cache()  # type: ignore[no-untyped-call]  # Powertools leaves it unannotated
    _secrets = None
    _http = None
