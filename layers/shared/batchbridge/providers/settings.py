"""The base of every provider's connection settings model (validated by ``Provider.configured``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ProviderSettings(BaseModel):
    """Base of each provider's connection settings model. Unknown settings are refused (a misspelt one
    would otherwise be silently ignored)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)
