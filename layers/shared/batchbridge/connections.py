"""Connections: named Secrets Manager secrets holding a provider's base URL, credentials and settings."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import httpx
from botocore.exceptions import ClientError
from pydantic import ValidationError

from batchbridge import aws
from batchbridge.config import get_settings
from batchbridge.errors import ConfigurationError, ConnectionNotFoundError
from batchbridge.models import Connection
from batchbridge.providers.base import Provider, provider_class
from batchbridge.providers.http import new_client

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_CACHE_SECONDS = 300
_cache: dict[str, tuple[float, Connection]] = {}
_http = None


def secret_name(name: str) -> str:
    return get_settings().connection_secret_prefix + name


def load_connection(name: str, *, fresh: bool = False) -> Connection:
    """Read and validate a connection secret; cached for five minutes per container unless ``fresh``."""
    if not NAME_PATTERN.match(name):
        raise ConnectionNotFoundError(f"connection name {name!r} is not valid")
    hit = _cache.get(name)
    if hit and hit[0] > time.monotonic() and not fresh:
        return hit[1]
    try:
        raw = aws.client("secretsmanager").get_secret_value(SecretId=secret_name(name))["SecretString"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            raise ConnectionNotFoundError(f"unknown connection {name!r}") from None
        raise
    connection = parse_connection(name, raw)
    _cache[name] = (time.monotonic() + _CACHE_SECONDS, connection)
    return connection


def parse_connection(name: str, raw: str) -> Connection:
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
    global _http
    _cache.clear()
    _http = None
