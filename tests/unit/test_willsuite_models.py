"""WillSuite: parsing the job message, the job and options models, the declared capabilities."""

import pytest
from pydantic import ValidationError

from batchbridge.providers.willsuite import (
    WillSuiteJob,
    WillSuiteOptions,
    WillSuiteProvider,
    parse_message,
)
from batchbridge_local.simulators.willsuite import failure_message

# The vendor's own example ``message`` from the api-jobs documentation, exactly as published.
SEED_MESSAGE = (
    "---------------------------\nCase ID: 4528a261-917d-4cbc-939e-7ea48cffca69 failed with the following "
    "errors:\n\nCase does not exist or record already updated.\n"
    "------------------------------------------------------\nCase ID: 53c3a84d-8eef-4015-8bc6-499f8eccd161 "
    "failed with the following errors:\n\nCase does not exist or record already updated.\n"
    "---------------------------"
)


def test_the_vendors_example_message_gives_two_failed_cases_with_their_reason():
    # When the documented example is parsed
    parsed = parse_message(SEED_MESSAGE)
    # Then both cases are failures with the vendor's reason, and nothing else is left over
    assert parsed.failures == {
        "4528a261-917d-4cbc-939e-7ea48cffca69": "Case does not exist or record already updated.",
        "53c3a84d-8eef-4015-8bc6-499f8eccd161": "Case does not exist or record already updated.",
    }
    assert parsed.other == ""


def test_the_simulator_writes_the_vendors_exact_format():
    # Given the two failures of the vendor's example
    failures = [
        ("4528a261-917d-4cbc-939e-7ea48cffca69", "Case does not exist or record already updated."),
        ("53c3a84d-8eef-4015-8bc6-499f8eccd161", "Case does not exist or record already updated."),
    ]
    # Then the simulator renders them byte for byte as WillSuite does
    assert failure_message(failures) == SEED_MESSAGE
    assert failure_message([]) == ""


def test_an_empty_or_missing_message_has_no_failures():
    assert parse_message(None).failures == {}
    assert parse_message("").failures == {}
    assert parse_message("  \n").other == ""


def test_multi_line_reasons_upper_case_ids_and_other_text_are_kept_apart():
    # Given a message with a job-level note, a case with two reasons, and an id in capitals
    message = (
        "Import aborted after a timeout.\n"
        "---------------------------\n"
        "Case ID: 4528A261-917D-4CBC-939E-7EA48CFFCA69 failed with the following errors:\n\n"
        "The status field is invalid.\nThe date must be a date.\n"
        "---------------------------"
    )
    # When it is parsed
    parsed = parse_message(message)
    # Then the id is matched case-insensitively, both reason lines stay, and the note is "other"
    assert parsed.failures == {
        "4528a261-917d-4cbc-939e-7ea48cffca69": "The status field is invalid.\nThe date must be a date."
    }
    assert parsed.other == "Import aborted after a timeout."


def test_a_case_named_twice_keeps_both_reasons():
    message = failure_message([("A-1", "first"), ("a-1", "second")])
    assert parse_message(message).failures == {"a-1": "first\nsecond"}


def test_a_job_is_a_case_id_plus_any_case_fields():
    # Given a case with WillSuite fields BatchBridge does not know
    job = WillSuiteJob.model_validate(
        {
            "id": "4528a261-917d-4cbc-939e-7ea48cffca69",
            "status": "closed",
            "notes": {"x": 1},
            "clientRef": "r1",
        }
    )
    # Then they are kept, and clientRef stays BatchBridge's own field
    assert job.client_ref == "r1"
    assert job.model_extra == {"status": "closed", "notes": {"x": 1}}
    # and a case field that merely looks like it is not taken for it
    other = WillSuiteJob.model_validate({"id": "4528a261-917d-4cbc-939e-7ea48cffca69", "client_ref": "x"})
    assert other.client_ref is None
    assert other.model_extra == {"client_ref": "x"}


@pytest.mark.parametrize("bad", [None, 42, "", "not-a-uuid", "4528a261917d4cbc939e7ea48cffca69"])
def test_a_job_needs_a_uuid_case_id(bad):
    with pytest.raises(ValidationError) as info:
        WillSuiteJob.model_validate({"id": bad} if bad is not None else {})
    assert info.value.errors()[0]["loc"] == ("id",)


@pytest.mark.parametrize("seconds", [300, 450, 600])
def test_poll_interval_inside_the_vendors_window_is_accepted(seconds):
    options = WillSuiteOptions.model_validate({"pollIntervalSeconds": seconds})
    assert options.model_dump(by_alias=True, exclude_none=True) == {"pollIntervalSeconds": seconds}


@pytest.mark.parametrize("seconds", [0, 60, 299.9, 600.5, 3600])
def test_poll_interval_outside_the_vendors_window_is_refused_clearly(seconds):
    with pytest.raises(ValidationError) as info:
        WillSuiteOptions.model_validate({"pollIntervalSeconds": seconds})
    error = info.value.errors()[0]
    assert error["loc"] == ("pollIntervalSeconds",)
    assert "between 300 and 600 seconds" in error["msg"]


def test_no_options_or_unknown_options():
    assert WillSuiteOptions.model_validate({}).model_dump(by_alias=True, exclude_none=True) == {}
    with pytest.raises(ValidationError):
        WillSuiteOptions.model_validate({"callbackUrl": "https://example.com"})


def test_capabilities_follow_the_vendors_polling_advice():
    caps = WillSuiteProvider.capabilities
    assert (caps.name, caps.title) == ("willsuite", "WillSuite")
    assert (caps.min_poll_seconds, caps.max_poll_seconds) == (300, 600)
    assert not caps.supports_callback
    assert not caps.supports_cancel
    assert caps.max_jobs_per_submit == 500
    assert caps.default_deadline_seconds <= caps.max_deadline_seconds == 24 * 3600
    # the options model's bounds are the declared ones
    WillSuiteOptions.model_validate({"pollIntervalSeconds": caps.min_poll_seconds})
    WillSuiteOptions.model_validate({"pollIntervalSeconds": caps.max_poll_seconds})
