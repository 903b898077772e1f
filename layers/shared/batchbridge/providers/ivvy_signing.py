"""iVvy request signing (HMAC-SHA1), exactly as iVvy documents it.

>>> sign_request(secret="foo", body=b'{"example":"body"}', content_type="application/json",
...              request_uri="/api/1.0/test?action=ping", ivvy_headers={"IVVY-Date": "2012-04-03 22:23:24"})
'8c7a8f2bcd32aa06d9c4097653bee4106b64fe81'
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime

API_VERSION = "1.0"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def content_md5(body: bytes) -> str:
    return hashlib.md5(body, usedforsecurity=False).hexdigest()


def canonical_ivvy_headers(headers: Mapping[str, str]) -> str:
    """Every header whose name starts with IVVY, as ``name=value`` with ``-``/``_`` stripped, sorted."""
    parts = [
        f"{name.lower().replace('-', '').replace('_', '')}={value}"
        for name, value in headers.items()
        if name.lower().startswith("ivvy")
    ]
    return "&".join(sorted(parts))


def string_to_sign(
    *,
    method: str = "POST",
    body_md5: str,
    content_type: str,
    date: str = "",
    request_uri: str,
    ivvy_headers: Mapping[str, str],
) -> str:
    initial = (
        method
        + body_md5
        + content_type
        + date
        + request_uri
        + API_VERSION
        + canonical_ivvy_headers(ivvy_headers)
    )
    return initial.lower()


def sign_request(
    *,
    secret: str,
    body: bytes,
    content_type: str,
    request_uri: str,
    ivvy_headers: Mapping[str, str],
    date: str = "",
) -> str:
    message = string_to_sign(
        body_md5=content_md5(body),
        content_type=content_type,
        date=date,
        request_uri=request_uri,
        ivvy_headers=ivvy_headers,
    )
    return hmac.new(secret.encode(), message.encode(), hashlib.sha1).hexdigest()


def ivvy_date(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime(DATE_FORMAT)


def signed_headers(
    *, api_key: str, secret: str, body: bytes, request_uri: str, now: datetime | None = None
) -> dict[str, str]:
    """The full header set for one request."""
    content_type = "application/json"
    ivvy = {"IVVY-Date": ivvy_date(now)}
    signature = sign_request(
        secret=secret,
        body=body,
        content_type=content_type,
        request_uri=request_uri,
        ivvy_headers=ivvy,
    )
    return {
        "Content-Type": content_type,
        "Content-MD5": content_md5(body),
        **ivvy,
        "X-Api-Authorization": f"IWS {api_key}:{signature}",
    }
