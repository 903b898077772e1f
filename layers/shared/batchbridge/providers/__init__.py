"""Provider adapters, one module each, named as the provider is. Importing an adapter registers it:
:func:`load_adapter` imports the one a batch uses, :func:`load_adapters` all of them."""

from __future__ import annotations

import importlib

ADAPTER_MODULES: tuple[str, ...] = ("ivvy", "willsuite", "superoffice", "os1")


def load_adapter(name: str) -> bool:
    """Import the adapter of provider ``name``, if there is one (each invocation uses one provider, so it
    loads that adapter alone); False for a name no adapter module has."""
    if name not in ADAPTER_MODULES:
        return False
    importlib.import_module(f"batchbridge.providers.{name}")
    return True


def load_adapters() -> None:
    for module in ADAPTER_MODULES:
        load_adapter(module)
