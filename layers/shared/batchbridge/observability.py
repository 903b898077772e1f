"""Logger, Tracer and Metrics, created once and imported everywhere."""

from collections.abc import Iterator
from contextlib import contextmanager

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from batchbridge.errors import (
    AmbiguousSubmitError,
    BatchRejectedError,
    ProviderAuthError,
    ProviderJobFailedError,
    ProviderNotReadyError,
    ProviderResponseError,
    ProviderThrottledError,
    ProviderUnavailableError,
    ResultsExpiredError,
    UnknownProviderStatusError,
)

logger = Logger(service="batchbridge")
# With tracing on, the X-Ray SDK patches only what the functions call out with: AWS (botocore) here, for
# every function, and the providers' httpx in batchbridge.providers.http, which only the functions that
# talk to a vendor import (patching it imports it). The SDK's default, every library it knows, imports
# each one it finds at cold start.
TRACED_LIBRARIES = ("botocore",)
tracer = Tracer(service="batchbridge", patch_modules=TRACED_LIBRARIES)
metrics = Metrics(namespace="BatchBridge", service="batchbridge")

PROVIDER_ERRORS = (
    ProviderThrottledError,
    ProviderUnavailableError,
    ProviderResponseError,
    ProviderNotReadyError,
    ProviderAuthError,
    BatchRejectedError,
    ProviderJobFailedError,
    UnknownProviderStatusError,
    ResultsExpiredError,
    AmbiguousSubmitError,
)
"""What a provider did to a task: the errors the ProviderErrorRateAlarm counts."""


@contextmanager
def provider_task() -> Iterator[None]:
    """Count a workflow task that talks to the provider, and the provider error it raised, if any.

    Emits ``ProviderCalls`` and ``ProviderErrors`` (dimension ``service``; the template's
    ProviderErrorRateAlarm divides one by the other) and ``ProviderErrors`` once more with an
    ``ErrorType`` dimension naming the exception. The error is re-raised: the workflow's Retry and Catch
    still see it.

    >>> with provider_task():                                       # doctest: +SKIP
    ...     return engine.check_batch(batch_id, seconds_left).dump()
    """
    metrics.add_metric(name="ProviderCalls", unit=MetricUnit.Count, value=1)
    try:
        yield
    except PROVIDER_ERRORS as exc:
        metrics.add_metric(name="ProviderErrors", unit=MetricUnit.Count, value=1)
        with single_metric(
            name="ProviderErrors",
            unit=MetricUnit.Count,
            value=1,
            namespace=metrics.namespace,
            default_dimensions={"service": "batchbridge", "ErrorType": type(exc).__name__},
        ):
            pass
        raise
