"""The shared layer as built, in a Lambda-like Python: the runtime's SDK only, tracing on.

The rest of the suite runs the handlers in the development venv (every dependency there, tracing off).
These run them against the layer the Makefile builds, as a deployed function starts: a fresh venv with
only the runtime's SDK, the layer on the path, ``POWERTOOLS_TRACE_DISABLED`` unset, X-Ray's daemon
address a UDP socket on loopback that this test reads. Building the environment takes a few seconds.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import load_event

from batchbridge_local import lambda_env

pytestmark = pytest.mark.xdist_group("layer")

FUNCTIONS = {f.logical_id: f for f in lambda_env.functions()}
TASK_FUNCTIONS = sorted(name for name in FUNCTIONS if name != "ApiFunction")

# Runs in the Lambda-like interpreter: one cold start and invocation as the runtime makes them; prints
# what was imported from where, and the answer, as JSON.
_INVOKE = """
import json, os, sys
import {module} as handler
from aws_xray_sdk.core import patcher
from batchbridge.observability import tracer

class Context:
    function_name = {name!r}
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:" + function_name
    aws_request_id = "00000000-0000-4000-8000-000000000000"
    def get_remaining_time_in_millis(self):
        return 60_000

opt = os.path.join({opt!r}, "")
seen = {{
    "tracing": not tracer.disabled,
    "patched": sorted(patcher._PATCHED_MODULES),
    "imported_httpx": "httpx" in sys.modules,
    "sdk": sys.modules["botocore"].__file__,
    "compiled": sorted(n for n, m in list(sys.modules.items())
                       if (getattr(m, "__file__", None) or "").startswith(opt) and m.__file__.endswith(".py")
                       and not os.path.exists(m.__spec__.cached)),
}}
try:
    seen["result"] = handler.lambda_handler(json.loads(sys.stdin.read()), Context())
except Exception as exc:
    seen["error"] = type(exc).__name__
print("SEEN " + json.dumps(seen, default=str))
"""

TRACE_HEADER = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"


@pytest.fixture(scope="session")
def env(tmp_path_factory: pytest.TempPathFactory) -> lambda_env.LambdaEnv:
    return lambda_env.build(tmp_path_factory.mktemp("lambda-like"))


@pytest.fixture
def xray_daemon() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A UDP socket on loopback standing in for the X-Ray daemon; yields its address and the segment
    documents received so far."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    received: list[dict[str, Any]] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            # Each datagram is a JSON header line, then the segment document.
            received.append(json.loads(data.split(b"\n", 1)[1]))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}", received
    finally:
        stop.set()
        reader.join(2)
        sock.close()


def invoke(env: lambda_env.LambdaEnv, name: str, event: Any, daemon: str) -> dict[str, Any]:
    """Cold-start function ``name`` and invoke it once in a Lambda-like interpreter, tracing on."""
    function = FUNCTIONS[name]
    code = _INVOKE.format(module=function.module, name=name, opt=str(env.opt / "python"))
    extra = {"AWS_XRAY_DAEMON_ADDRESS": daemon, "_X_AMZN_TRACE_ID": TRACE_HEADER}
    done = env.run(function, code, extra, stdin=json.dumps(event))
    lines = [line for line in done.stdout.splitlines() if line.startswith("SEEN ")]
    assert lines, f"{name} did not start:\n{done.stderr}"
    seen: dict[str, Any] = json.loads(lines[-1].removeprefix("SEEN "))
    return seen


def assert_started_from_the_layer(env: lambda_env.LambdaEnv, seen: dict[str, Any]) -> None:
    assert seen["tracing"] is True
    # What the function calls out with, nothing more: AWS, and the vendors' httpx where it is imported
    assert seen["patched"] == (["botocore", "httpx"] if seen["imported_httpx"] else ["botocore"])
    assert seen["sdk"].startswith(str(env.site_packages)), "botocore must be the runtime's"
    assert seen["compiled"] == [], "shipped without bytecode: compiled again at every cold start"


def wait_for(received: list[dict[str, Any]], name: str) -> dict[str, Any]:
    deadline = threading.Event()
    for _ in range(50):
        for document in received:
            if document.get("name") == name:
                return document
        deadline.wait(0.1)
    raise AssertionError(
        f"no {name!r} subsegment reached the daemon; got {[d.get('name') for d in received]}"
    )


def test_the_layer_holds_none_of_the_runtime_sdk_and_ships_bytecode(env: lambda_env.LambdaEnv) -> None:
    site = env.opt / "python"
    for package in ("boto3", "botocore", "s3transfer", "urllib3", "dateutil", "jmespath", "anyio"):
        assert not (site / package).exists(), f"the layer ships {package}"
    assert not list(site.glob("bin")), "the layer ships console scripts"
    # Third-party packages as bytecode only; batchbridge as source and bytecode.
    assert not list((site / "pydantic").rglob("*.py"))
    assert (site / "pydantic" / "main.pyc").exists()
    assert (site / "batchbridge" / "api.py").exists()
    assert list((site / "batchbridge" / "__pycache__").glob("api.cpython-313.pyc"))


def test_the_api_starts_answers_and_traces_with_tracing_on(
    env: lambda_env.LambdaEnv, xray_daemon: tuple[str, list[dict[str, Any]]]
) -> None:
    daemon, received = xray_daemon
    seen = invoke(env, "ApiFunction", load_event("api/list_providers.json"), daemon)
    assert_started_from_the_layer(env, seen)
    assert seen["result"]["statusCode"] == 200, seen
    providers = json.loads(seen["result"]["body"])
    assert {p["name"] for p in providers["providers"]} == {"ivvy", "willsuite", "superoffice", "os1"}
    traced = wait_for(received, "## lambda_handler")
    assert traced["trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"


@pytest.mark.parametrize("name", TASK_FUNCTIONS)
def test_each_task_starts_and_rejects_a_bad_input_through_the_tracer(
    env: lambda_env.LambdaEnv, xray_daemon: tuple[str, list[dict[str, Any]]], name: str
) -> None:
    daemon, received = xray_daemon
    seen = invoke(env, name, {"batchId": "not-a-batch-id"}, daemon)
    assert_started_from_the_layer(env, seen)
    assert seen["error"] == "ValidationError"
    traced = wait_for(received, "## lambda_handler")
    assert traced.get("fault") is True or traced.get("error") is True, traced


# Which functions talk to a vendor at all: those import the provider machinery (and httpx, traced) with
# the handler; the others import neither it nor any adapter.
CALLS_VENDORS = {
    "ApiFunction",
    "ValidateUploadFunction",
    "SubmitBatchFunction",
    "CheckStatusFunction",
    "CollectResultsFunction",
}

_IMPORTED = """
import json, sys
import {module}
print(json.dumps(sorted(n for n in sys.modules if n == "httpx" or n.startswith("batchbridge.providers."))))
"""


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(
            name,
            marks=pytest.mark.xfail(
                strict=True,
                reason="finalize imports tasks.collect's Settler, whose module imports providers.base",
            ),
        )
        if name == "FinalizeBatchFunction"
        else name
        for name in sorted(FUNCTIONS)
    ],
)
def test_a_task_imports_the_provider_machinery_only_if_it_talks_to_a_vendor_and_no_adapter_before_it_is_used(
    env: lambda_env.LambdaEnv, name: str
) -> None:
    function = FUNCTIONS[name]
    done = env.run(function, _IMPORTED.format(module=function.module))
    assert done.returncode == 0, done.stderr
    imported = set(json.loads(done.stdout))
    adapters = {f"batchbridge.providers.{a}" for a in ("ivvy", "willsuite", "superoffice", "os1")}
    assert not imported & adapters, "an adapter is imported when its provider is used, not at cold start"
    if name in CALLS_VENDORS:
        assert {"httpx", "batchbridge.providers.base", "batchbridge.providers.http"} <= imported
    else:
        assert imported == set(), "a function that never talks to a vendor"


def test_a_provider_s_adapter_is_imported_alone_when_it_is_first_asked_for(env: lambda_env.LambdaEnv) -> None:
    code = (
        "import sys\n"
        "from batchbridge.providers.base import provider_class\n"
        "print(provider_class('os1').__name__, "
        "sorted(n.rsplit('.', 1)[1] for n in sys.modules if n.rsplit('.', 1)[-1] in "
        "('ivvy', 'willsuite', 'superoffice', 'os1')))"
    )
    done = env.run(FUNCTIONS["SubmitBatchFunction"], code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().split(maxsplit=1) == ["OS1Provider", "['os1']"]


def test_httpx_works_without_anyio(env: lambda_env.LambdaEnv) -> None:
    """The lock leaves anyio out (httpx needs it for its async client only): the sync client the
    providers use still makes requests."""

    class Hello(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"hello")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        code = (
            f"import httpx, sys; r = httpx.get({url!r}); print(r.status_code, r.text, 'anyio' in sys.modules)"
        )
        done = env.run(FUNCTIONS["SubmitBatchFunction"], code)
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["200", "hello", "False"]


def test_the_environment_is_the_template_s(env: lambda_env.LambdaEnv) -> None:
    """The probe environment carries the deployed function's variables and nothing of this process's."""
    seen = env.environment(FUNCTIONS["ApiFunction"])
    assert seen["POWERTOOLS_SERVICE_NAME"] == "batchbridge"
    assert "POWERTOOLS_TRACE_DISABLED" not in seen
    assert seen["PYTHONPATH"].split(":") == [str(FUNCTIONS["ApiFunction"].code_dir), str(env.opt / "python")]
    assert Path(seen["LAMBDA_TASK_ROOT"]).name == "api"


# --- the signing layer -------------------------------------------------------------------------------
_SIGN = """
import base64
import json
from batchbridge.errors import ConfigurationError
from batchbridge.providers.superoffice import signed_system_token
try:
    print("SIGNED " + signed_system_token("sys-token", {key!r}))
except ConfigurationError as exc:
    print("REFUSED " + str(exc))
"""


def _sign_in(env: lambda_env.LambdaEnv, key: str, *layers: Path) -> str:
    function = FUNCTIONS["SubmitBatchFunction"]
    path = ":".join([str(function.code_dir), *(str(layer / "python") for layer in layers)])
    done = env.run(function, _SIGN.format(key=key), {"PYTHONPATH": path})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_system_user_signs_in_with_the_signing_layer_and_is_told_what_to_deploy_without_it(
    env: lambda_env.LambdaEnv, tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    # Without the signing layer: a configuration error naming the parameter, not an ImportError
    assert _sign_in(env, pem, env.opt) == (
        "REFUSED a SuperOffice system-user connection needs the signing layer to sign its token: deploy "
        "with SuperOfficeSystemUsers=true"
    )
    # With it (built by its Makefile target, as sam build does): a token SuperOffice can verify
    signing = lambda_env.build_layer(tmp_path / "signing", env.python, layer="SigningLayer")
    answer = _sign_in(env, pem, env.opt, signing)
    assert answer.startswith("SIGNED sys-token.")
    token, stamp, signature = answer.removeprefix("SIGNED ").split(".")
    key.public_key().verify(
        base64.b64decode(signature), f"{token}.{stamp}".encode(), padding.PKCS1v15(), hashes.SHA256()
    )
    assert lambda_env.tree_bytes(signing) < 20_000_000
