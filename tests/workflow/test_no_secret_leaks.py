"""Secrets stay secret: batches run for every provider with credentials of known, distinctive values,
once with the right ones (a partially successful batch) and once with a wrong one (a batch that fails on
authentication), then again while the endpoint that issues tokens or tickets answers cut-short or
malformed JSON -- a cut-short answer still holds the token it issued. Then everything the system keeps or
says is searched for every credential the simulators hold or issued (``secret_values()``: configured
secrets, access tokens, tickets) - execution histories, the logs written meanwhile at DEBUG, every S3
object, every DynamoDB item, every published event and the API's answers. They appear nowhere, in clear
or in base64. (The connection secrets themselves live in Secrets Manager, which is where they belong and
the one place not searched.)"""

from __future__ import annotations

import base64
import io
import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from batchbridge_local.simulators.ivvy import IvvySimulator, booking_session_jobs
from batchbridge_local.simulators.os1 import OS1Simulator
from batchbridge_local.simulators.superoffice import SuperOfficeSimulator
from batchbridge_local.simulators.willsuite import WillSuiteSimulator
from tests.workflow.helpers import submit

pytestmark = [pytest.mark.workflow, pytest.mark.xdist_group("stack")]

SUPEROFFICE_OPTIONS = {
    "tableName": "contact",
    "fieldValueInfos": [{"Key": "business_idx", "CurrentOperationType": "Set", "Values": ["3"]}],
}


def canary(kind: str) -> str:
    """A value that occurs nowhere by chance (letters and digits only: URL- and JSON-encoding keep it)."""
    return f"CANARY{kind}{uuid.uuid4().hex}"


class Secrets:
    """Every credential value handed out in this module, with the encodings a leak could take."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def new(self, label: str) -> str:
        self.values[label] = canary(label.replace("-", "").replace(".", ""))
        return self.values[label]

    def add(self, label: str, value: str) -> None:
        self.values[label] = value

    def forms(self) -> dict[str, str]:
        forms: dict[str, str] = {}
        for label, value in self.values.items():
            forms[label] = value
            forms[f"{label} (base64)"] = base64.b64encode(value.encode()).decode()
            forms[f"{label} (base64url)"] = base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")
        # HTTP Basic auth of each id:secret pair that an OAuth client might send
        for provider in ("willsuite", "os1"):
            for variant in ("", "-wrong"):
                client_id = self.values[f"{provider}.clientId"]
                pair = f"{client_id}:{self.values[f'{provider}.clientSecret{variant}']}"
                forms[f"{provider} basic auth{variant}"] = base64.b64encode(pair.encode()).decode()
        return forms


@pytest.fixture(scope="module")
def secrets() -> Secrets:
    return Secrets()


@pytest.fixture(scope="module")
def sims(secrets: Secrets) -> Iterator[dict[str, Any]]:
    """One simulator per provider, holding this module's credential values."""
    ivvy = IvvySimulator(api_key=secrets.new("ivvy.apiKey"), api_secret=secrets.new("ivvy.apiSecret"))
    willsuite = WillSuiteSimulator(
        client_id=secrets.new("willsuite.clientId"), client_secret=secrets.new("willsuite.clientSecret")
    )
    os1 = OS1Simulator(client_id=secrets.new("os1.clientId"), client_secret=secrets.new("os1.clientSecret"))
    superoffice = SuperOfficeSimulator()
    superoffice.ticket = "7T:" + secrets.new("superoffice.ticket")
    superoffice.app_token = secrets.new("superoffice.appToken")
    superoffice.access_token = secrets.new("superoffice.accessToken")
    superoffice.system_user_token = secrets.new("superoffice.systemUserToken")
    started = {"ivvy": ivvy, "willsuite": willsuite, "os1": os1, "superoffice": superoffice}
    for sim in started.values():
        sim.start()
    # OS1 also checks an origin token on writes; the callback secret rides along with each batch
    os1.origin_token = secrets.new("os1.originToken")
    # A SuperOffice system user signs with its private key: one line of the key is as telling as all of it
    secrets.add("superoffice.privateKey", superoffice.private_key_pem.splitlines()[2])
    secrets.new("os1.callbackSecret")
    for sim in started.values():
        sim.job_seconds = 0.3
    os1.batch_seconds = 0.3
    yield started
    for sim in started.values():
        sim.stop()


@pytest.fixture(scope="module")
def connections(stack: Any, sims: dict[str, Any], secrets: Secrets) -> dict[str, tuple[str, str]]:
    """Per provider: a connection with the right credentials and one with a wrong secret."""
    s = secrets.values
    ivvy, willsuite, os1, superoffice = sims["ivvy"], sims["willsuite"], sims["os1"], sims["superoffice"]
    good_and_bad = {
        "ivvy": (
            ("ivvy", ivvy.base_url, {"apiKey": s["ivvy.apiKey"], "apiSecret": s["ivvy.apiSecret"]}, {}),
            {"apiKey": s["ivvy.apiKey"], "apiSecret": secrets.new("ivvy.apiSecret-wrong")},
        ),
        "willsuite": (
            (
                "willsuite",
                willsuite.api_base_url,
                {"clientId": s["willsuite.clientId"], "clientSecret": s["willsuite.clientSecret"]},
                {},
            ),
            {
                "clientId": s["willsuite.clientId"],
                "clientSecret": secrets.new("willsuite.clientSecret-wrong"),
            },
        ),
        "os1": (
            (
                "os1",
                os1.base_url,
                {
                    "clientId": s["os1.clientId"],
                    "clientSecret": s["os1.clientSecret"],
                    "originToken": s["os1.originToken"],
                    "callbackSecret": s["os1.callbackSecret"],
                },
                {"tenantId": os1.tenant_id},
            ),
            {
                "clientId": s["os1.clientId"],
                "clientSecret": secrets.new("os1.clientSecret-wrong"),
                "originToken": s["os1.originToken"],
            },
        ),
        "superoffice": (
            (
                "superoffice",
                superoffice.base_url,
                {"ticket": superoffice.ticket, "appToken": s["superoffice.appToken"]},
                {"contextIdentifier": superoffice.context_identifier, "notRunningWaitSeconds": 100},
            ),
            {
                "ticket": "7T:" + secrets.new("superoffice.ticket-wrong"),
                "appToken": s["superoffice.appToken"],
            },
        ),
    }
    # A SuperOffice system user obtains its own ticket
    good_and_bad["superoffice-system"] = (
        (
            "superoffice",
            superoffice.base_url,
            {
                "systemUserToken": s["superoffice.systemUserToken"],
                "privateKey": superoffice.private_key_pem,
                "appToken": s["superoffice.appToken"],
            },
            {"contextIdentifier": superoffice.context_identifier},
        ),
        {
            "systemUserToken": s["superoffice.systemUserToken"],
            "privateKey": superoffice.private_key_pem,
            "appToken": secrets.new("superoffice.appToken-wrong"),
        },
    )
    names: dict[str, tuple[str, str]] = {}
    for provider, ((kind, url, creds, settings), wrong) in good_and_bad.items():
        good_name, bad_name = f"leak-{provider}", f"leak-{provider}-wrong"
        stack.add_connection(good_name, kind, url, creds, settings)
        stack.add_connection(bad_name, kind, url, wrong, settings)
        names[provider] = (good_name, bad_name)
        CONNECTIONS[provider] = (kind, url, creds, settings)
    return names


# What each connection was made of, for the runs that add a fresh copy of it (its own token cache entry).
CONNECTIONS: dict[str, tuple[str, str, dict[str, str], dict[str, Any]]] = {}
# The endpoints that issue credentials, and the faults aimed at them.
ISSUERS = {"willsuite": "/oauth/token/", "os1": "/aaa/auth/", "superoffice-system": "PartnerSystemUser"}
CUT_SHORT_RUNS = [
    ("willsuite", "truncated_next"),
    ("willsuite", "malformed_next"),
    ("os1", "truncated_next"),
    ("os1", "malformed_next"),
    ("superoffice-system", "truncated_next"),
]


def jobs_for(
    provider: str, sims: dict[str, Any], tag: str = ""
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Six jobs of which the provider refuses some, so failed outcomes (with the vendor's messages)
    are written too; returns the jobs and the batch's extra fields."""
    if provider == "ivvy":
        return booking_session_jobs(6, invalid_every=3), {}
    if provider == "willsuite":
        jobs = [
            {"clientRef": f"c{i}", "id": str(uuid.UUID(int=i + 1)), "status": "reviewed"} for i in range(6)
        ]
        sims["willsuite"].failures.update({jobs[2]["id"]: "Case does not exist or record already updated."})
        return jobs, {}
    if provider == "superoffice-system":
        return jobs_for("superoffice", sims, tag)
    if provider == "os1":
        jobs = [
            {"clientRef": f"d{i}", "uniqueCode": f"LEAK{tag}-{i}", "name": f"Driver {i}", "properties": {}}
            for i in range(6)
        ]
        sims["os1"].failures.update({f"LEAK{tag}-1": "mobile number is not valid"})
        return jobs, {"options": {"participantType": "drivers"}}
    jobs = [{"clientRef": f"contact-{i}", "id": 2000 + i} for i in range(6)]
    sims["superoffice"].failures.update({2004: "Contact is locked by another user"})
    return jobs, {"options": SUPEROFFICE_OPTIONS}


@pytest.fixture
def debug_logs(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> Iterator[io.StringIO]:
    """Everything the handlers log at DEBUG, formatted exactly as Lambda would ship it to CloudWatch
    (Powertools' JSON, extra keys and tracebacks included); libraries' own records come through caplog."""
    from batchbridge.observability import logger

    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "DEBUG")
    std = logging.getLogger(logger.name)
    sink = io.StringIO()
    handler = logging.StreamHandler(sink)
    handler.setFormatter(logger.registered_formatter)
    previous = std.level
    std.addHandler(handler)
    std.setLevel(logging.DEBUG)
    caplog.set_level(logging.INFO)  # httpx logs each request line at INFO
    try:
        yield sink
    finally:
        std.removeHandler(handler)
        std.setLevel(previous)


def texts_of(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else json.dumps(value, default=str)


def test_credentials_appear_nowhere_the_system_writes(
    stack, sims, connections, secrets, debug_logs, caplog, capfd
):
    # Given a good and a wrong-secret connection per provider
    # When a batch runs on each of them, all eight at once
    batches: dict[str, tuple[str, str]] = {}
    for provider, (good, bad) in connections.items():
        jobs, extra = jobs_for(provider, sims)
        kind = CONNECTIONS[provider][0]
        batches[provider] = (
            submit(stack, kind, good, jobs, **extra),
            submit(stack, kind, bad, jobs, **extra),
        )
    views: dict[str, dict[str, Any]] = {}
    for provider, (good_id, bad_id) in batches.items():
        views[good_id] = stack.wait_for_batch(good_id, timeout=90)
        views[bad_id] = stack.wait_for_batch(bad_id, timeout=90)
        # Then the right credentials got partly refused jobs and the wrong ones an auth failure, so both
        # the outcome paths and the error paths wrote what they write
        assert views[good_id]["status"] == "PARTIALLY_SUCCEEDED", (provider, views[good_id])
        assert views[bad_id]["status"] == "FAILED", (provider, views[bad_id])
        assert views[bad_id]["error"]["code"] == "PROVIDER_AUTH_FAILED", (provider, views[bad_id])
    all_ids = [i for pair in batches.values() for i in pair]

    # When the endpoint that issues tokens or tickets answers once with cut-short or malformed JSON
    # (after it issued the credential), each on a fresh connection so that it must sign in
    for n, (provider, fault) in enumerate(CUT_SHORT_RUNS):
        sim = sims["superoffice" if provider.startswith("superoffice") else provider]
        kind, url, creds, settings = CONNECTIONS[provider]
        name = f"leak-{provider}-cut-{n}"
        stack.add_connection(name, kind, url, creds, settings)
        sim.faults.only_paths = (ISSUERS[provider],)
        setattr(sim.faults, fault, 1)
        jobs, extra = jobs_for(provider, sims, tag=f"-cut{n}")
        batch_id = submit(stack, kind, name, jobs, **extra)
        view = stack.wait_for_batch(batch_id, timeout=120)
        # Then the broken answer was met (and retried, nothing having been sent), and the batch ran on
        assert getattr(sim.faults, fault) == 0, (provider, fault)
        assert view["status"] == "PARTIALLY_SUCCEEDED", (provider, fault, view)
        sim.faults.only_paths = ()
        all_ids.append(batch_id)

    # Every credential the simulators hold or issued during the run (tokens, tickets) is searched for
    for name, sim in sims.items():
        held = sim.secret_values()
        for n, value in enumerate(held):
            secrets.add(f"{name}.held{n}", value)
    assert sims["willsuite"].issued and sims["os1"].issued, "an OAuth provider issued no token"
    assert sims["superoffice"].issued_tickets, "the SuperOffice system user never obtained a ticket"

    # and everything the system kept or said is gathered
    haystacks: list[tuple[str, str]] = []
    for batch_id in all_ids:
        history = stack.execution_history(batch_id)
        assert len(history) > 5
        haystacks.append((f"execution history of {batch_id}", texts_of(history)))
        haystacks.append((f"execution of {batch_id}", texts_of(stack.execution(batch_id))))
        for path in (f"/batches/{batch_id}", f"/batches/{batch_id}/results"):
            status, answer = stack.api("GET", path)
            assert status == 200, answer
            haystacks.append((f"GET {path}", texts_of(answer)))
    haystacks += [(f"s3://{key}", texts_of(body)) for key, body in stack.all_objects()]
    haystacks += [(f"item {item['pk']} {item['sk']}", texts_of(item)) for item in stack.all_items()]
    for batch_id in all_ids:  # each batch's event has arrived
        assert stack.received_events(batch_id, wait=10), batch_id
    events = stack.received_events()
    assert {e["event"]["data"]["batchId"] for e in events} >= set(all_ids)
    haystacks += [(f"event {e['event']['id']}", texts_of(e)) for e in events]
    handler_logs = debug_logs.getvalue()
    captured = capfd.readouterr()
    haystacks += [
        ("handler logs", handler_logs),
        ("library logs", caplog.text),
        ("stdout", captured.out),
        ("stderr", captured.err),
    ]

    # The logs are not vacuous: DEBUG records were written, and they name the batches
    assert '"level":"DEBUG"' in handler_logs
    assert all(batch_id in handler_logs for batch_id in all_ids)
    assert "HTTP Request" in caplog.text

    # Then not one credential, in any encoding, is in any of it
    leaks = [
        f"{label} in {where}"
        for where, text in haystacks
        for label, form in secrets.forms().items()
        if form in text
    ]
    assert leaks == []
