"""Provider adapters, one module each. :func:`load_adapters` imports them, which registers them."""

from __future__ import annotations

import importlib

ADAPTER_MODULES: tuple[str, ...] = ("ivvy", "willsuite", "superoffice", "os1")


def load_adapters() -> None:
    for module in ADAPTER_MODULES:
        importlib.import_module(f"batchbridge.providers.{module}")
