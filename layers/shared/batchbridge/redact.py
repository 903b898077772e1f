"""Keep credentials out of every text BatchBridge records.

Vendor text (error bodies, messages, exception strings) reaches batch errors, outcome rows, results
files, events, logs and API answers. :func:`scrub` is the one gate it passes on the way: it removes the
values it is told are secret, and anything credential-shaped (bearer tokens, JWTs, long opaque token
strings, ``key=value`` pairs whose key names a secret).

>>> scrub('401 {"access_token": "eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl"}')
'401 {"access_token": "[redacted]"}'
"""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "[redacted]"

# Keys whose values are credentials, in JSON ("key": "value"), query/form (key=value) or header
# (Key: value) form.
_CREDENTIAL_FIELDS = (
    r"access[_-]?token|refresh[_-]?token|id[_-]?token|token|ticket|so[_-]?ticket|secret|client[_-]?secret|"
    r"api[_-]?secret|api[_-]?key|apikey|password|passwd|authorization|x-api-authorization|x-coreos-access|"
    r"accesstoken|clientsecret|app[_-]?token|sig|signature"
)
_KEYED = re.compile(
    rf"""(?ix)
    (?P<key>["']?(?:{_CREDENTIAL_FIELDS})["']?\s*[:=]\s*)
    (?P<quote>["']?)
    (?P<value>(?:Bearer\s+|SOTicket\s+|Basic\s+|IWS\s+)?[^"'\s,&}}]+)
    """
)
# A JWT: three base64url segments (the first two start like JSON objects do).
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
# Scheme-prefixed credentials wherever they stand.
_SCHEMED = re.compile(r"(?i)\b(Bearer|SOTicket|Basic|IWS)\s+[A-Za-z0-9._~+/=:-]{8,}")
# Any long opaque run of token characters (40+, letters and digits mixed): tickets, keys, session ids.
# Words, numbers and paths do not look like that; identifiers do (UUIDs, hex ids such as iVvy's asyncId)
# and are kept: they name records, and credentials are not written in hex alone.
_OPAQUE = re.compile(r"(?<![A-Za-z0-9_~+=.-])[A-Za-z0-9_~+=.-]{40,}")
_HEX = re.compile(r"[0-9a-fA-F]+")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _opaque(match: re.Match[str]) -> str:
    value = match.group(0)
    if (
        _UUID.fullmatch(value)
        or _HEX.fullmatch(value)
        or not (re.search(r"\d", value) and re.search(r"[A-Za-z]", value))
    ):
        return value
    return REDACTED


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every given secret value and anything credential-shaped replaced by ``[redacted]``.

    Values shorter than 6 characters among ``secrets`` are ignored (replacing them would mangle text and
    protect nothing).
    """
    for secret in sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    text = _JWT.sub(REDACTED, text)
    text = _SCHEMED.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _KEYED.sub(lambda m: f"{m.group('key')}{m.group('quote')}{REDACTED}", text)
    return _OPAQUE.sub(_opaque, text)
