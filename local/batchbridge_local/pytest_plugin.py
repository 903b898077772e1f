"""A pytest plugin: the four vendor simulators, their fault knobs, and the whole local stack as fixtures,
so a project built on BatchBridge tests its jobs without the vendors.

Installed with the ``[local]`` extra, it loads by itself (entry point ``pytest11``). Fixtures:

``ivvy_simulator``, ``willsuite_simulator``, ``superoffice_simulator``, ``os1_simulator``
    A running simulator (real HTTP on 127.0.0.1), reset to its defaults before and after each test.
    Its knobs are attributes: ``sim.faults.throttle_next = 2`` (the next two requests get 429),
    ``sim.faults.server_error_next``, ``drop_next``, ``drop_after_handling_next``, ``malformed_next``,
    ``truncated_next``, ``latency_seconds``, narrowed with ``only_paths``/``only_methods``; and the vendor's
    own (``ivvy_simulator.fail_jobs``, ``willsuite_simulator.failures``, ``superoffice_simulator.
    start_maintenance()``, ``os1_simulator.fail_next_batches`` ...). ``sim.requests`` logs what was sent.
``batchbridge_stack``
    The local stack (the real template, workflow and handlers on moto, S3 served on loopback) with one
    connection per provider to the simulators above: ``ivvy-local``, ``willsuite-local``,
    ``superoffice-local``, ``os1-local``. One per test session; moto is process-wide, so a test process
    holds one local stack at most.
``batchbridge_client``
    A :class:`batchbridge_client.BatchBridgeClient` for ``batchbridge_stack``'s API.

The ini option ``batchbridge_job_seconds`` (default 0.3) sets how long the simulated vendors take per job run.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

PROVIDERS = ("ivvy", "willsuite", "superoffice", "os1")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "batchbridge_job_seconds", "seconds the BatchBridge vendor simulators take per job run", default="0.3"
    )


@pytest.fixture(scope="session")
def _batchbridge_simulators(pytestconfig: pytest.Config) -> Iterator[dict[str, Any]]:
    from batchbridge_local.serve import simulators

    started = simulators(float(pytestconfig.getini("batchbridge_job_seconds")))
    for sim in started.values():
        sim.start()
    try:
        yield started
    finally:
        for sim in started.values():
            sim.stop()


def _fresh(sims: dict[str, Any], provider: str) -> Iterator[Any]:
    sim = sims[provider]
    sim.reset()
    yield sim
    sim.reset()


@pytest.fixture
def ivvy_simulator(_batchbridge_simulators: dict[str, Any]) -> Iterator[Any]:
    """The iVvy simulator, reset before and after the test."""
    yield from _fresh(_batchbridge_simulators, "ivvy")


@pytest.fixture
def willsuite_simulator(_batchbridge_simulators: dict[str, Any]) -> Iterator[Any]:
    """The WillSuite simulator, reset before and after the test."""
    yield from _fresh(_batchbridge_simulators, "willsuite")


@pytest.fixture
def superoffice_simulator(_batchbridge_simulators: dict[str, Any]) -> Iterator[Any]:
    """The SuperOffice simulator, reset before and after the test."""
    yield from _fresh(_batchbridge_simulators, "superoffice")


@pytest.fixture
def os1_simulator(_batchbridge_simulators: dict[str, Any]) -> Iterator[Any]:
    """The OS1 simulator, reset before and after the test."""
    yield from _fresh(_batchbridge_simulators, "os1")


@pytest.fixture(scope="session")
def batchbridge_stack(_batchbridge_simulators: dict[str, Any]) -> Iterator[Any]:
    """The local stack with the connections ``<provider>-local`` to the simulators."""
    from batchbridge_local.serve import connect
    from batchbridge_local.stack import LocalStack

    with LocalStack(serve_s3=True) as stack:
        for provider, sim in _batchbridge_simulators.items():
            connect(stack, provider, sim)
        yield stack


@pytest.fixture
def batchbridge_client(batchbridge_stack: Any) -> Any:
    """A client of the local stack's API (no credentials needed)."""
    from batchbridge_client import BatchBridgeClient

    return BatchBridgeClient(batchbridge_stack.api_url)
