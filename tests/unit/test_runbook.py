"""docs/runbook.md keeps up with the code: a section per terminal status and per alarm, every error the
workflow and the adapters can record is explained, and every code it names exists in the code."""

from __future__ import annotations

import re
from pathlib import Path

from batchbridge import errors
from batchbridge.models import BatchStatus
from batchbridge.observability import PROVIDER_ERRORS
from batchbridge_local import template as tpl

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = (ROOT / "docs" / "runbook.md").read_text()
PACKAGE = ROOT / "layers" / "shared" / "batchbridge"
SOURCES = {path: path.read_text() for path in PACKAGE.rglob("*.py")}
DEFINITION = (ROOT / "statemachine" / "batch.asl.json").read_text()
HEADINGS = set(re.findall(r"^#{2,4} (.+?)\s*$", RUNBOOK, flags=re.MULTILINE))
# Raised by the API only, or turned into another code before anything records them.
NOT_RECORDED_ON_A_BATCH = {
    "BatchBridgeError",
    "UNKNOWN_PROVIDER",
    "UNKNOWN_CONNECTION",
    "BATCH_NOT_FOUND",
    "IDEMPOTENCY_KEY_REUSED",
    "INVALID_STATE",
    "CANCEL_NOT_SUPPORTED",
    "INVALID_TOKEN",
    "SUBMIT_UNCONFIRMED",  # the engine records such a submit as AMBIGUOUS_SUBMIT
    "PROVIDER_NOT_READY",  # the workflow waits and asks again; it never ends a batch
}
# Codes the adapters build from the vendor's own number: IVVY_<specificCode>, OS1_<12 digits>.
VENDOR_NUMBERED = {"IVVY": 'f"IVVY_{', "OS1": 'f"OS1_{'}


def adapter_codes() -> set[str]:
    """The outcome codes each adapter defines and uses (a constant defined but never used is left out)."""
    found = set()
    for path, text in SOURCES.items():
        if path.parent.name != "providers":
            continue
        for name, value in re.findall(
            r'^([A-Z_]+) = "((?:IVVY|WILLSUITE|SUPEROFFICE|OS1)_[A-Z_]+)"', text, re.M
        ):
            if len(re.findall(rf"\b{name}\b", text)) > 1:
                found.add(value)
    return found


def test_every_terminal_status_has_its_section():
    for status in BatchStatus:
        if status.is_terminal:
            assert status.value in HEADINGS, status


def test_every_alarm_of_the_template_has_its_section():
    alarms = [k for k, r in tpl.load()["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"]
    assert alarms
    for alarm in alarms:
        assert alarm in HEADINGS, alarm


def test_every_error_a_batch_can_record_is_explained():
    codes = {
        cls.code
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.BatchBridgeError)
    }
    for code in (codes - NOT_RECORDED_ON_A_BATCH) | adapter_codes():
        assert f"`{code}`" in RUNBOOK, code


def test_every_provider_error_type_the_alarm_counts_is_in_its_table():
    for error in PROVIDER_ERRORS:
        assert f"`{error.__name__}`" in RUNBOOK, error.__name__


def test_every_code_the_runbook_names_exists_in_the_code():
    # Every upper-case word the code can write: string literals in the package and the definition.
    literals = set()
    for text in [*SOURCES.values(), DEFINITION]:
        literals |= set(re.findall(r'"([A-Z][A-Z0-9_]{2,})"', text))
    named = set(re.findall(r"`([A-Z][A-Z0-9]*_[A-Z0-9_]+|[A-Z]{4,})`", RUNBOOK))
    assert named
    for code in named:
        family = re.fullmatch(r"(IVVY|OS1)_\d+", code)
        if family:  # an example of a vendor's number: the adapter must build such codes
            assert any(VENDOR_NUMBERED[family.group(1)] in text for text in SOURCES.values()), code
            continue
        assert code in literals, f"docs/runbook.md names {code}, which no code writes"
