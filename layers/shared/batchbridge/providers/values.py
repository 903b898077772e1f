"""Checks for the free-form JSON a job or an option carries through to a vendor.

Python's JSON reader takes ``NaN``, ``Infinity`` and integers of any length, but JSON itself has no NaN
or Infinity, and a number beyond 2**53 does not survive a vendor's parser (nor DynamoDB's 38 digits). So a
value that travels to a vendor must be portable JSON: finite numbers, integers a double holds exactly,
bounded nesting. A job that breaks that gets a 422 naming the field at ``POST /batches`` instead of
failing later, at the vendor or at a write.
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any

from pydantic import AfterValidator, ValidationInfo

MAX_SAFE_INTEGER = 2**53 - 1
MAX_DEPTH = 32


def portable_problem(value: Any, where: str = "", depth: int = 0) -> str | None:
    """Why ``value`` is not portable JSON (naming the path inside it), or None when it is.

    >>> portable_problem({"a": [1, float("nan")]})
    'a[1]: NaN is not a JSON number'
    >>> portable_problem({"n": 10**20})
    'n: 100000000000000000000 is outside the integers JSON carries exactly (±9007199254740991)'
    """
    if depth > MAX_DEPTH:
        return f"{where or 'value'}: nested deeper than {MAX_DEPTH} levels"
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return None
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            shown = str(value) if len(str(value)) <= 24 else f"a {len(str(abs(value)))}-digit number"
            return (
                f"{where or 'value'}: {shown} is outside the integers JSON carries exactly "
                f"(±{MAX_SAFE_INTEGER})"
            )
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return f"{where or 'value'}: NaN is not a JSON number"
        if math.isinf(value):
            return f"{where or 'value'}: Infinity is not a JSON number"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            found = portable_problem(item, f"{where}.{key}" if where else str(key), depth + 1)
            if found:
                return found
        return None
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found = portable_problem(item, f"{where}[{i}]", depth + 1)
            if found:
                return found
        return None
    return f"{where or 'value'}: {type(value).__name__} is not a JSON value"


# A run of 16 or more digits right after a separator: an integer that may be past 2**53 (or a string that
# merely looks so; either way the exact walk decides).
_LONG_INTEGER = re.compile(rb"[:\[,]-?\d{16,}")


#: Validation context of jobs whose JSON lines :func:`may_not_be_portable` already cleared.
CHECKED = "portable-checked"


def may_not_be_portable(line: bytes) -> bool:
    """Whether a value's compact JSON (written with ``allow_nan=False``) could hide a value that is not
    portable: a long run of digits, or more brackets than the depth allowed. False is certain; True asks
    for the exact walk, :func:`portable_problem`."""
    return _LONG_INTEGER.search(line) is not None or line.count(b"{") + line.count(b"[") > MAX_DEPTH


def check_portable(value: Any, info: ValidationInfo) -> Any:
    """The validator of :data:`PortableObject` (the API's one pass recognises it in a schema by this name).
    The exact walk only where the value's JSON, written once in C, shows it may be needed: NaN or
    Infinity, a long run of digits, or more brackets than the depth allowed (or where the caller did not
    look at the JSON already)."""
    if info.context == CHECKED:
        return value
    try:
        suspicious = may_not_be_portable(_STRICT(value).encode())
    except (ValueError, TypeError, RecursionError):
        suspicious = True  # NaN, Infinity, something not JSON at all, or nested past any limit
    problem = portable_problem(value) if suspicious else None
    if problem is not None:
        raise ValueError(problem)
    return value


_STRICT = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact UTF-8 JSON."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode())


PortableObject = Annotated[dict[str, Any], AfterValidator(check_portable)]
"""A JSON object whose every value is portable JSON."""
