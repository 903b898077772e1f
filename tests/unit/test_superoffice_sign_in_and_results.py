"""SuperOffice: a system user's ticket obtained as SuperOffice documents it, Basic auth for on-site
installations, results read through the connection's settings and matched by entity id, and batch
tasks deleted after collection when the connection asks for it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from batchbridge.errors import ConfigurationError, ProviderAuthError
from batchbridge.models import Connection, OutcomeKind
from batchbridge.providers.auth import clear_token_cache
from batchbridge.providers.base import ChunkInfo
from batchbridge.providers.http import new_client
from batchbridge.providers.superoffice import (
    CONFLICTING_RESULT,
    NO_RESULT,
    SuperOfficeProvider,
    clear_endpoint_cache,
)
from batchbridge_local.simulators.superoffice import SuperOfficeSimulator

OPTIONS = {
    "tableName": "contact",
    "fieldValueInfos": [{"Key": "business_idx", "CurrentOperationType": "Set", "Values": ["3"]}],
}


@pytest.fixture(scope="module")
def running_sim() -> Iterator[SuperOfficeSimulator]:
    with SuperOfficeSimulator(job_seconds=0.0) as simulator:
        yield simulator


@pytest.fixture
def sim(running_sim: SuperOfficeSimulator) -> SuperOfficeSimulator:
    running_sim.reset()
    clear_endpoint_cache()
    clear_token_cache()
    return running_sim


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with new_client(httpx.Timeout(3.0)) as client:
        yield client


def adapter(
    sim: SuperOfficeSimulator,
    http: httpx.Client,
    credentials: dict[str, str],
    base_url: str | None = None,
    **settings: Any,
) -> SuperOfficeProvider:
    connection = Connection(
        name="so-test",
        provider="superoffice",
        baseUrl=base_url or sim.base_url,
        credentials=credentials,
        settings={"contextIdentifier": sim.context_identifier, **settings},
    )
    return SuperOfficeProvider(connection, http)


def system_user(sim: SuperOfficeSimulator) -> dict[str, str]:
    return {
        "systemUserToken": sim.system_user_token,
        "privateKey": sim.private_key_pem,
        "appToken": sim.app_token,
    }


def chunk(ref: str | None = None) -> ChunkInfo:
    return ChunkInfo(batch_id="b-1", index=0, first_job_index=0, provider_ref=ref, options=OPTIONS)


def entities(*ids: int) -> list[dict[str, Any]]:
    return [{"id": i, "clientRef": f"ref-{i}"} for i in ids]


# --- system user ------------------------------------------------------------------------------------
def test_a_system_user_signs_its_token_and_the_ticket_is_cached(sim, http):
    # Given a system-user connection (no ticket in the secret at all)
    provider = adapter(sim, http, system_user(sim))
    # When it submits and checks twice, through two adapter instances
    ref = provider.submit(chunk(), entities(1, 2))
    adapter(sim, http, system_user(sim)).check(chunk(ref))
    # Then one ticket was obtained, with a signed token the simulator verified, and reused
    assert sim.tickets_issued == 1
    (sign_in,) = sim.requests_to("PartnerSystemUser")
    body = json.loads(sign_in.body)
    assert body["SignedSystemToken"].startswith(f"{sim.system_user_token}.")
    assert (body["ApplicationToken"], body["ContextIdentifier"], body["ReturnTokenType"]) == (
        sim.app_token,
        sim.context_identifier,
        "JWT",
    )
    ticket = next(iter(sim.issued_tickets))
    sent = sim.requests_to("ExecuteByEntityIds")[0].headers
    assert (sent["authorization"], sent["so-apptoken"]) == (f"SOTicket {ticket}", sim.app_token)


def test_a_lapsed_ticket_is_renewed_on_a_401_and_the_call_repeated_once(sim, http):
    provider = adapter(sim, http, system_user(sim))
    ref = provider.submit(chunk(), entities(1))
    sim.expire_tickets()
    provider.check(chunk(ref))
    assert sim.tickets_issued == 2


def test_a_ticket_is_renewed_before_its_lifetime_ends(sim, http):
    # Given tickets said to live 0.2 s (so renewed after half of that)
    provider = adapter(sim, http, system_user(sim), ticketLifetimeSeconds=0.2)
    ref = provider.submit(chunk(), entities(1))
    time.sleep(0.15)
    provider.check(chunk(ref))
    assert sim.tickets_issued == 2


def test_a_refused_system_user_sign_in_is_an_auth_error_without_any_secret(sim, http):
    credentials = {**system_user(sim), "systemUserToken": "not-ours-at-all"}
    with pytest.raises(ProviderAuthError, match="Unknown system user token") as caught:
        adapter(sim, http, credentials).submit(chunk(), entities(1))
    assert sim.private_key_pem not in str(caught.value)
    assert sim.app_token not in str(caught.value)
    assert sim.submissions == 0


def test_a_private_key_that_is_not_one_is_a_configuration_error_that_does_not_echo_it(sim, http):
    credentials = {
        **system_user(sim),
        "privateKey": "-----BEGIN PRIVATE KEY-----\nbm9wZQ==\n-----END PRIVATE KEY-----",
    }
    with pytest.raises(ConfigurationError, match="privateKey") as caught:
        adapter(sim, http, credentials).submit(chunk(), entities(1))
    assert "bm9wZQ" not in str(caught.value)


def test_credentials_of_two_schemes_without_auth_scheme_are_refused(sim, http):
    credentials = {**system_user(sim), "ticket": sim.ticket}
    with pytest.raises(ConfigurationError, match="authScheme"):
        adapter(sim, http, credentials).submit(chunk(), entities(1))
    adapter(sim, http, credentials, authScheme="SOTicket").submit(chunk(), entities(1))


# --- Basic (on-site) --------------------------------------------------------------------------------
def test_an_on_site_installation_takes_basic_auth_without_tenant_discovery(sim, http):
    credentials = {"username": sim.username, "password": sim.password}
    provider = adapter(sim, http, credentials, base_url=sim.endpoint, tenantDiscovery=False)
    ref = provider.submit(chunk(), entities(1))
    assert ref
    assert sim.state_requests == 0
    sent = sim.requests_to("ExecuteByEntityIds")[0].headers["authorization"]
    assert sent.startswith("Basic ")
    with pytest.raises(ProviderAuthError) as caught:
        adapter(
            sim,
            http,
            {"username": sim.username, "password": "wrong-one"},
            base_url=sim.endpoint,
            tenantDiscovery=False,
        ).submit(chunk(), entities(1))
    assert "wrong-one" not in str(caught.value)


# --- results ------------------------------------------------------------------------------------------
def ticket(sim: SuperOfficeSimulator) -> dict[str, str]:
    return {"ticket": sim.ticket, "appToken": sim.app_token}


def collected(provider: SuperOfficeProvider, jobs: list[dict[str, Any]]) -> list[Any]:
    info = chunk(provider.submit(chunk(), jobs))
    provider.check(info)
    return list(provider.collect(info, jobs, None))


def test_where_the_result_lives_and_what_its_items_are_called_come_from_the_connection(sim, http):
    # Given a tenant whose task names its result in Response and whose items say EntityId/Ok/Message
    sim.result_binary_field = "Response"
    sim.result_fields = ("EntityId", "Ok", "Message")
    sim.failures = {2: "Locked"}
    provider = adapter(
        sim,
        http,
        ticket(sim),
        resultBinaryObjectField="Response",
        resultIdField="EntityId",
        resultSucceededField="Ok",
        resultErrorField="Message",
    )
    outcomes = collected(provider, entities(1, 2))
    assert [(o.outcome, o.error.message if o.error else None) for o in outcomes] == [
        (OutcomeKind.SUCCEEDED, None),
        (OutcomeKind.FAILED, "Locked"),
    ]


def test_results_are_matched_by_entity_id_whatever_their_order_or_repeats(sim, http):
    # Given a result that is reordered, repeats entity 1 word for word, contradicts itself on entity 2,
    # leaves out entity 3 and names an entity the chunk does not hold
    def answer(items: list[dict[str, Any]]) -> list[Any]:
        one, two, _three = items
        return [
            {**two, "Succeeded": False, "Error": "no"},
            one,
            two,
            one,
            {"Id": 99, "Succeeded": True, "Error": None},
        ]

    sim.results_transform = answer
    outcomes = collected(adapter(sim, http, ticket(sim)), entities(1, 2, 3))
    assert outcomes[0].outcome is OutcomeKind.SUCCEEDED
    assert (outcomes[1].outcome, outcomes[1].error.code) == (OutcomeKind.NOT_PROCESSED, CONFLICTING_RESULT)
    assert (outcomes[2].outcome, outcomes[2].error.code) == (OutcomeKind.NOT_PROCESSED, NO_RESULT)


# --- clean-up -----------------------------------------------------------------------------------------
def test_batch_tasks_are_deleted_after_collection_only_when_the_connection_asks(sim, http):
    kept = adapter(sim, http, ticket(sim))
    info = chunk(kept.submit(chunk(), entities(1)))
    kept.cleanup(info)
    assert sim.deleted == []
    deleting = adapter(sim, http, ticket(sim), deleteTasksAfterCollect=True)
    deleting.cleanup(info)
    assert sim.deleted == [int(info.provider_ref or 0)]
    deleting.cleanup(info)  # already gone: nothing to do
    assert sim.deleted == [int(info.provider_ref or 0)]
