"""Provider adapters. Importing this package registers every adapter."""

from batchbridge.providers import ivvy  # noqa: F401
