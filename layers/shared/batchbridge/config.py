"""Environment settings, described by a model and validated once per container.

Code never reads ``os.environ`` directly: it calls :func:`get_settings`.
"""

from __future__ import annotations

import os
from functools import lru_cache

from pydantic import BaseModel, Field

from batchbridge import limits


class Settings(BaseModel):
    table_name: str = Field(min_length=1)
    bucket_name: str = Field(min_length=1)
    topic_arn: str = ""
    state_machine_arn: str = ""
    connection_secret_prefix: str = "batchbridge/connections/"  # noqa: S105 - a name prefix, not a secret
    event_source: str = "urn:batchbridge"
    # Multiplies every computed wait; the local runtime shrinks real-world intervals to seconds.
    poll_time_scale: float = Field(default=1.0, gt=0, le=1.0)
    max_body_bytes: int = limits.MAX_BODY_BYTES
    outcome_ttl_days: int = 90
    results_url_seconds: int = 900
    callback_base_url: str = ""
    # Seconds to wait for a provider's answer; the local runtime shortens it so fault tests stay quick.
    provider_read_timeout: float = Field(default=20.0, gt=0, le=120)
    # How long a chunk claimed for submission stays claimed: at least the submit function's timeout, so a
    # claim outlives its claimer. A claim found after that was left by a submit that stopped mid-call.
    claim_lease_seconds: float = Field(default=330.0, gt=0)
    # Uploads: the function POST /uploads/{id}/complete starts, and how long pre-signed upload URLs last.
    validate_upload_function: str = ""
    upload_url_seconds: int = Field(default=3600, ge=60, le=7 * 86400)

    @classmethod
    def from_environ(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        mapping = {
            "table_name": "TABLE_NAME",
            "bucket_name": "BUCKET_NAME",
            "topic_arn": "TOPIC_ARN",
            "state_machine_arn": "STATE_MACHINE_ARN",
            "connection_secret_prefix": "CONNECTION_SECRET_PREFIX",
            "event_source": "EVENT_SOURCE",
            "poll_time_scale": "POLL_TIME_SCALE",
            "max_body_bytes": "MAX_BODY_BYTES",
            "outcome_ttl_days": "OUTCOME_TTL_DAYS",
            "results_url_seconds": "RESULTS_URL_SECONDS",
            "callback_base_url": "CALLBACK_BASE_URL",
            "provider_read_timeout": "PROVIDER_READ_TIMEOUT",
            "claim_lease_seconds": "CLAIM_LEASE_SECONDS",
            "validate_upload_function": "VALIDATE_UPLOAD_FUNCTION",
            "upload_url_seconds": "UPLOAD_URL_SECONDS",
        }
        values = {field: env[var] for field, var in mapping.items() if env.get(var)}
        return cls.model_validate(values)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_environ()
