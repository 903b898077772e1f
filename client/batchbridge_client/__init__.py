"""The BatchBridge client: :class:`BatchBridgeClient` for Python, ``batchbridge`` on the command line."""

from batchbridge_client.client import (
    ApiError,
    BatchBridgeClient,
    BatchBridgeError,
    InvalidFileError,
    TimedOutError,
    resolve_api_url,
)

__all__ = [
    "ApiError",
    "BatchBridgeClient",
    "BatchBridgeError",
    "InvalidFileError",
    "TimedOutError",
    "resolve_api_url",
]
