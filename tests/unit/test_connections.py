"""Connection secrets are read through Powertools Parameters: cached per container, read again at once
when a provider's 401 asks for it (``fresh``), and a missing secret is an unknown connection."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from botocore.exceptions import ClientError

from batchbridge import connections
from batchbridge.config import get_settings
from batchbridge.errors import ConnectionNotFoundError


class SecretsManager:
    """A Secrets Manager client holding named secrets, counting the reads."""

    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}
        self.reads = 0
        self.error: str | None = None

    def get_secret_value(self, SecretId: str, **_: Any) -> dict[str, Any]:
        self.reads += 1
        if self.error or SecretId not in self.secrets:
            code = self.error or "ResourceNotFoundException"
            raise ClientError({"Error": {"Code": code, "Message": "no"}}, "GetSecretValue")
        return {"SecretString": self.secrets[SecretId]}


@pytest.fixture
def manager(monkeypatch):
    monkeypatch.setenv("TABLE_NAME", "t")
    monkeypatch.setenv("BUCKET_NAME", "b")
    get_settings.cache_clear()
    client = SecretsManager()
    connections.clear_cache()
    monkeypatch.setattr(connections, "_secrets", SecretsProvider(boto3_client=client))  # type: ignore[arg-type]
    yield client
    connections.clear_cache()
    get_settings.cache_clear()


def put(manager: SecretsManager, name: str, token: str) -> None:
    secret = {"provider": "os1", "baseUrl": "https://os1.example", "credentials": {"token": token}}
    manager.secrets[connections.secret_name(name)] = json.dumps(secret)


def test_a_connection_is_read_once_and_then_served_from_the_cache(manager):
    put(manager, "os1-main", "first")
    assert connections.load_connection("os1-main").secret("token") == "first"
    put(manager, "os1-main", "rotated")
    assert connections.load_connection("os1-main").secret("token") == "first"
    assert manager.reads == 1


def test_a_fresh_read_after_a_401_picks_up_the_rotated_secret_and_caches_it(manager):
    put(manager, "os1-main", "first")
    connections.load_connection("os1-main")
    put(manager, "os1-main", "rotated")
    assert connections.load_connection("os1-main", fresh=True).secret("token") == "rotated"
    assert connections.load_connection("os1-main").secret("token") == "rotated"
    assert manager.reads == 2


def test_a_missing_secret_is_an_unknown_connection(manager):
    with pytest.raises(ConnectionNotFoundError, match="unknown connection 'nope'"):
        connections.load_connection("nope")


def test_any_other_failure_is_raised_as_the_client_raised_it(manager):
    put(manager, "os1-main", "first")
    manager.error = "ThrottlingException"
    with pytest.raises(ClientError) as raised:
        connections.load_connection("os1-main")
    assert raised.value.response["Error"]["Code"] == "ThrottlingException"
