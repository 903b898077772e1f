"""The batch metrics the dashboard reads, from the message the finalize task really returns
(events.sns_message of a finished batch record): names, dimensions, units and values."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from batchbridge import events, ops_metrics
from batchbridge.config import Settings
from batchbridge.records import Batch

# A finished batch record as the table holds it. The shape of ``cost`` beyond ``totalUsd`` is not
# settled yet; ``totalUsd`` is the one key the metric reads.
FINISHED = {
    "batchId": "0b6f2a4e-5d1c-4c89-9a57-0c0c5f3b1e11",
    "provider": "willsuite",
    "connection": "willsuite-acme-prod",
    "status": "PARTIALLY_SUCCEEDED",
    "jobCount": 450,
    "chunkCount": 1,
    "jobsKey": "batches/x/jobs.jsonl",
    "deadlineAt": 1_800_000_000,
    "counts": {"total": 450, "succeeded": 400, "failed": 45, "notProcessed": 5},
    "createdAt": "2026-03-02T10:00:00Z",
    "finishedAt": "2026-03-02T10:41:07.250Z",
    "durationSeconds": 2467.25,
    "pollCount": 17,
    "cost": {"totalUsd": 0.001475},
    "resultsKey": "batches/x/results.jsonl",
}
SETTINGS = Settings(table_name="t", bucket_name="b")


def finalized(**changes):
    """What the finalize task returns for a batch record: the real event builder's output."""
    return events.sns_message(Batch.from_item({**FINISHED, **changes}), SETTINGS)


def test_a_finished_batch_is_counted_by_provider_and_status(emitted):
    ops_metrics.batch_finished(finalized())
    (counted,) = [d for d in emitted() if "BatchesFinished" in d.values]
    assert counted.namespace == "BatchBridge"
    assert counted.dimensions == {
        "service": "batchbridge",
        "provider": "willsuite",
        "status": "PARTIALLY_SUCCEEDED",
    }
    assert counted.values == {"BatchesFinished": 1.0}
    assert counted.units == {"BatchesFinished": "Count"}
    assert counted.metadata["batchId"] == FINISHED["batchId"]


def test_its_time_rounds_cost_and_jobs_are_the_batch_records_own(emitted):
    ops_metrics.batch_finished(finalized())
    (values,) = [d for d in emitted() if "BatchDurationSeconds" in d.values]
    assert values.dimensions == {"service": "batchbridge", "provider": "willsuite"}
    assert values.values == {
        "BatchDurationSeconds": FINISHED["durationSeconds"],
        "BatchRounds": FINISHED["pollCount"],
        "BatchEstimatedCostUsd": FINISHED["cost"]["totalUsd"],
        "JobsSucceeded": 400,
        "JobsFailed": 45,
        "JobsNotProcessed": 5,
    }
    assert values.units == {
        "BatchDurationSeconds": "Seconds",
        "BatchRounds": "Count",
        "BatchEstimatedCostUsd": "None",
        "JobsSucceeded": "Count",
        "JobsFailed": "Count",
        "JobsNotProcessed": "Count",
    }


def test_no_dimension_carries_a_batch_id_or_a_connection(emitted):
    ops_metrics.batch_finished(finalized())
    for document in emitted():
        assert set(document.dimensions) <= {"service", "provider", "status"}
        assert FINISHED["connection"] not in json.dumps(document.dimensions)
        assert FINISHED["batchId"] not in json.dumps(document.dimensions)


def test_a_value_the_event_does_not_have_is_left_out_not_sent_as_zero(emitted):
    ops_metrics.batch_finished(finalized(cost=None, durationSeconds=None))
    (values,) = [d for d in emitted() if "BatchRounds" in d.values]
    assert "BatchEstimatedCostUsd" not in values.values
    assert "BatchDurationSeconds" not in values.values


@pytest.mark.parametrize(
    "changes",
    [{"provider": "acme-crm"}, {"status": "RUNNING"}],
    ids=["unregistered provider", "not terminal"],
)
def test_a_dimension_value_outside_the_bounded_sets_is_never_emitted(emitted, changes):
    ops_metrics.batch_finished(finalized(**changes))
    assert emitted() == []


@pytest.mark.parametrize("status", [200, 400, 409, 422])
def test_only_a_new_batch_counts_as_accepted(emitted, status):
    # A replayed Idempotency-Key answers 200 with the batch counted when it was created
    ops_metrics.batch_accepted(status, {"batchId": FINISHED["batchId"], "provider": "ivvy"})
    assert emitted() == []


def test_an_accepted_batch_is_counted_by_provider(emitted):
    ops_metrics.batch_accepted(202, {"batchId": FINISHED["batchId"], "provider": "os1"})
    (document,) = emitted()
    assert document.dimensions == {"service": "batchbridge", "provider": "os1"}
    assert document.values == {"BatchesAccepted": 1.0}
    assert document.metadata["batchId"] == FINISHED["batchId"]


def test_the_namespace_is_the_one_the_handlers_and_alarms_use():
    from batchbridge.observability import metrics

    assert metrics.namespace == ops_metrics.NAMESPACE
    assert metrics.service == ops_metrics.SERVICE


def test_a_record_that_cannot_be_read_loses_the_metric_not_the_accepted_batch(emitted, monkeypatch):
    # Given the 202 answer names no provider and reading the batch record back fails (a throttled table,
    # or a bug): the batch was accepted all the same
    class Unreadable:
        def get_batch(self, batch_id):
            raise RuntimeError("the table is having a bad day")

    class Deps:
        repo = Unreadable()

    monkeypatch.setattr("batchbridge.tasks.Deps.default", staticmethod(lambda: Deps()))
    # When the API records the metric, then nothing escapes to turn the 202 into a 500, and nothing is sent
    ops_metrics.batch_accepted(202, {"batchId": FINISHED["batchId"]})
    assert emitted() == []


def test_a_finalize_answer_the_metrics_cannot_read_does_not_fail_the_finalize_task(emitted):
    ops_metrics.batch_finished({"status": "SUCCEEDED", "message": "not the event"})
    ops_metrics.batch_finished({"status": "SUCCEEDED"})
    assert emitted() == []


def test_the_provider_dimension_is_every_registered_provider_without_importing_one():
    # ops_metrics counts a provider by its adapter's module name, so that finalize never imports one: that
    # holds only while every adapter registers under the name of its module.
    from batchbridge.providers import ADAPTER_MODULES
    from batchbridge.providers.base import provider_class

    for name in ADAPTER_MODULES:
        assert provider_class(name).__module__ == f"batchbridge.providers.{name}"
        assert provider_class(name).capabilities.name == name


def test_counting_a_finished_batch_imports_no_provider_adapter():
    # In a fresh interpreter, as finalize's first invocation: the count is made, and no adapter (nor httpx)
    # is imported for it.
    code = f"""
import json, sys
from batchbridge import events, ops_metrics
from batchbridge.config import Settings
from batchbridge.records import Batch
message = events.sns_message(Batch.from_item({FINISHED!r}), Settings(table_name="t", bucket_name="b"))
ops_metrics.batch_finished(message)
loaded = [n for n in sys.modules if n == "httpx" or n.startswith("batchbridge.providers.")]
print("LOADED " + json.dumps(sorted(loaded)))
"""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(sys.path),
        "POWERTOOLS_METRICS_DISABLED": "false",
        "POWERTOOLS_DEV": "false",
    }
    done = subprocess.run(  # noqa: S603 - this interpreter, on code written here
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert '"BatchesFinished"' in done.stdout, "the finished batch was counted"
    (loaded,) = [line for line in done.stdout.splitlines() if line.startswith("LOADED ")]
    assert json.loads(loaded.removeprefix("LOADED ")) == []
