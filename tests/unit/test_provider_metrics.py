"""The provider-error metrics behind ProviderErrorRateAlarm: every provider-facing task counts one
ProviderCalls; a provider error also counts ProviderErrors, in total and by ErrorType, and still
reaches the workflow."""

from __future__ import annotations

import pytest

from batchbridge.errors import ConfigurationError, ProviderAuthError, ProviderThrottledError
from batchbridge.observability import provider_task


def total(documents, name: str, **dims: str) -> float:
    return sum(
        d.total(name)
        for d in documents
        if d.namespace == "BatchBridge" and d.dimensions == {"service": "batchbridge", **dims}
    )


def test_a_task_that_succeeds_counts_a_call_and_no_error(emitted):
    with provider_task():
        pass
    documents = emitted()
    assert total(documents, "ProviderCalls") == 1
    assert total(documents, "ProviderErrors") == 0


@pytest.mark.parametrize("error", [ProviderThrottledError("429", retry_after=3), ProviderAuthError("no")])
def test_a_provider_error_is_counted_by_type_and_re_raised(emitted, error):
    # When the task's engine call raises a provider error
    with pytest.raises(type(error)), provider_task():
        raise error
    # Then the workflow still sees it, and both the total and the typed counter moved by one
    documents = emitted()
    assert total(documents, "ProviderCalls") == 1
    assert total(documents, "ProviderErrors") == 1
    assert total(documents, "ProviderErrors", ErrorType=type(error).__name__) == 1


def test_our_own_errors_are_not_blamed_on_the_provider(emitted):
    with pytest.raises(ConfigurationError), provider_task():
        raise ConfigurationError("connection secret has no baseUrl")
    documents = emitted()
    assert total(documents, "ProviderCalls") == 1
    assert total(documents, "ProviderErrors") == 0
