"""Error answers of the API function, read raw as API Gateway passes them on: always JSON with
``nosniff``, never a traceback, and never the caller's input echoed as markup. Whatever a caller puts in
a body, a path or a provider name comes back JSON-escaped (``\\u003c``) or not at all."""

from __future__ import annotations

import json
from typing import Any

import pytest

from batchbridge_local.stack import proxy_event

pytestmark = pytest.mark.xdist_group("stack")

SCRIPT = "<script>alert(1)</script>"


def call(
    stack: Any,
    method: str,
    path: str,
    *,
    resource: str | None = None,
    params: dict[str, str] | None = None,
    body: str | None = None,
) -> dict[str, Any]:
    """Invoke the api function with an API Gateway REST proxy event and return its raw answer."""
    event = proxy_event(method, path, body=body, resource=resource, params=params)
    return dict(stack.functions["ApiFunction"].invoke(event))


def header(answer: dict[str, Any], name: str) -> str | None:
    for key, values in (answer.get("multiValueHeaders") or {}).items():
        if key.lower() == name.lower():
            return str(values[-1])
    for key, value in (answer.get("headers") or {}).items():
        if key.lower() == name.lower():
            return str(value)
    return None


def assert_safe_error(answer: dict[str, Any], status: int) -> dict[str, Any]:
    """A JSON error object with the status expected, served so no client reads it as a page."""
    assert answer["statusCode"] == status, answer
    assert header(answer, "Content-Type") == "application/json"
    assert header(answer, "X-Content-Type-Options") == "nosniff"
    raw = answer["body"]
    assert "<" not in raw and ">" not in raw, raw
    assert "Traceback" not in raw
    parsed = json.loads(raw)
    assert set(parsed) == {"error"} and parsed["error"]["code"], parsed
    return dict(parsed)


def test_a_provider_name_with_markup_is_named_escaped(stack):
    body = json.dumps({"provider": SCRIPT, "connection": "c", "jobs": [{"clientRef": "a"}]})
    parsed = assert_safe_error(call(stack, "POST", "/batches", body=body), 422)
    # the name may be quoted back to the caller, but only as JSON data
    assert parsed["error"]["details"][0]["field"] == "provider"


def test_an_unknown_field_with_markup_is_named_escaped(stack):
    body = json.dumps({"provider": "ivvy", "connection": "c", "jobs": [{}], SCRIPT: 1})
    parsed = assert_safe_error(call(stack, "POST", "/batches", body=body), 422)
    assert SCRIPT in [d["field"] for d in parsed["error"]["details"]]


def test_malformed_json_with_markup_is_not_echoed(stack):
    parsed = assert_safe_error(call(stack, "POST", "/batches", body='{"provider": "' + SCRIPT), 400)
    assert "script" not in json.dumps(parsed)


@pytest.mark.parametrize(
    ("method", "path", "resource", "params"),
    [
        ("GET", f"/batches/{SCRIPT}", "/batches/{batch_id}", {"batch_id": SCRIPT}),
        ("GET", "/batches/b-%3Cscript%3E/results", "/batches/{batch_id}/results", {"batch_id": "b-<i>"}),
        ("POST", f"/batches/{SCRIPT}/cancel", "/batches/{batch_id}/cancel", {"batch_id": SCRIPT}),
        ("GET", f"/nowhere/{SCRIPT}", None, None),
        ("DELETE", "/batches", None, None),
    ],
)
def test_unknown_batches_and_routes_do_not_echo_the_path(stack, method, path, resource, params):
    parsed = assert_safe_error(call(stack, method, path, resource=resource, params=params), 404)
    assert "script" not in json.dumps(parsed).lower()
    assert "<i>" not in json.dumps(parsed)


def test_a_callback_with_markup_in_its_path_is_refused_without_echo(stack):
    batch, token = SCRIPT, "<img src=x onerror=alert(1)>"
    answer = call(
        stack,
        "POST",
        f"/callbacks/{batch}/{token}",
        resource="/callbacks/{batch_id}/{token}",
        params={"batch_id": batch, "token": token},
        body="{}",
    )
    parsed = assert_safe_error(answer, 404)
    assert "onerror" not in json.dumps(parsed) and "script" not in json.dumps(parsed)


def test_an_oversized_callback_body_is_refused_before_it_is_read(stack):
    params = {"batch_id": "b-1", "token": "t" * 32}
    answer = call(
        stack,
        "POST",
        "/callbacks/b-1/" + "t" * 32,
        resource="/callbacks/{batch_id}/{token}",
        params=params,
        body='{"asyncId": "' + "x" * (1024 * 1024) + '"}',
    )
    assert assert_safe_error(answer, 413)["error"]["code"] == "BODY_TOO_LARGE"


def test_an_unexpected_error_answers_500_without_its_message(stack, monkeypatch):
    # Given a defect somewhere below the API whose message carries input and internals
    from batchbridge import api

    def broken() -> dict[str, Any]:
        raise RuntimeError(f"boom {SCRIPT} at /var/task/secret-path")

    monkeypatch.setattr(api, "providers_view", broken)
    # When a route hits it
    parsed = assert_safe_error(call(stack, "GET", "/providers"), 500)
    # Then the caller gets a fixed message and a request id, nothing of the exception
    assert parsed["error"]["code"] == "INTERNAL_ERROR"
    assert "boom" not in parsed["error"]["message"] and "secret-path" not in parsed["error"]["message"]
