"""The local runtime: the real template, state machine and handlers on moto, in one process.

moto provides S3, DynamoDB, SNS, SQS, Secrets Manager and Step Functions, and executes the real ASL.
When the workflow invokes a Lambda task, moto's Lambda backend is routed to the real handler module
in-process, and a handler that raises answers as Lambda does (``x-amz-function-error`` with
``{errorType, errorMessage}``), so the state machine's ``Retry`` and ``Catch`` see typed errors.
"""

from __future__ import annotations

import base64
import functools
import importlib.util
import io
import json
import os
import threading
import time
import traceback
import uuid
import zipfile
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
from moto import mock_aws
from moto.awslambda.models import LambdaFunction

from batchbridge_local import template as tpl
from batchbridge_local.client_faults import ClientFaultRegistry, refusing_factory

REGION = "us-east-1"
ACCOUNT = "123456789012"
PREFIX = "batchbridge-local"
TERMINAL = {"SUCCEEDED", "PARTIALLY_SUCCEEDED", "FAILED", "TIMED_OUT", "CANCELLED", "NEEDS_ATTENTION"}

# Environment the local stack adds to every function, on top of the template's.
LOCAL_ENV = {
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "POWERTOOLS_DEV": "false",
    # Real-world poll intervals (minutes) become seconds locally.
    "POLL_TIME_SCALE": "0.01",
    "PROVIDER_READ_TIMEOUT": "3",
    # A local submit call ends within the read timeout: its claim can lapse after a few seconds.
    "CLAIM_LEASE_SECONDS": "6",
}


@dataclass
class FakeContext:
    """The parts of the Lambda context the handlers use."""

    function_name: str
    timeout_seconds: float
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"

    def __post_init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.function_name}"
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + self.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


#: Powertools' event handler keeps the event it is resolving on a class every resolver in the process
#: shares (``BaseRouter.current_event``): in Lambda a process runs one invocation at a time, here the
#: functions' invocations share one process, so those of functions built on it run one at a time.
_EVENT_HANDLER_LOCK = threading.Lock()


@dataclass
class LocalFunction:
    logical_id: str
    name: str
    code_dir: Path
    handler: str
    timeout: float
    environment: dict[str, str]
    memory_mb: int = 128
    _idle: list[ModuleType] = field(default_factory=list)
    _containers: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _container(self) -> ModuleType:
        """An idle container's copy of the handler module, or a new container's.

        Lambda runs one invocation at a time in a container and starts another for a concurrent one; a
        handler may keep state at module level between the lines of one invocation, so two invocations at
        once never share a module."""
        with self._lock:
            if self._idle:
                return self._idle.pop()
            self._containers += 1
            number = self._containers
        module_file = self.handler.rpartition(".")[0]
        path = self.code_dir / f"{module_file}.py"
        spec = importlib.util.spec_from_file_location(f"batchbridge_fn_{self.code_dir.name}_{number}", path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    @functools.cached_property
    def _one_at_a_time(self) -> bool:
        """Whether the handler is built on Powertools' event handler (see :data:`_EVENT_HANDLER_LOCK`)."""
        source = (self.code_dir / f"{self.handler.rpartition('.')[0]}.py").read_text()
        return "aws_lambda_powertools.event_handler" in source

    def invoke(self, event: Any) -> Any:
        module = self._container()
        try:
            handler = getattr(module, self.handler.rpartition(".")[2])
            context = FakeContext(self.name, self.timeout, self.memory_mb)
            if not self._one_at_a_time:
                return handler(event, context)
            with _EVENT_HANDLER_LOCK:
                return handler(event, context)
        finally:
            with self._lock:
                self._idle.append(module)


class LocalStack:
    """Build the stack from ``template.yaml`` inside ``mock_aws`` and run it.

    >>> with LocalStack() as stack:                                    # doctest: +SKIP
    ...     stack.add_connection("ivvy-demo", "ivvy", sim.base_url, {"apiKey": "k", "apiSecret": "s"})
    ...     status, body = stack.api("POST", "/batches", {...})
    """

    def __init__(
        self,
        *,
        env: dict[str, str] | None = None,
        template_path: Path = tpl.TEMPLATE,
        serve_s3: bool = False,
        api_port: int = 0,
        s3_port: int = 0,
    ) -> None:
        """``serve_s3``: serve S3 on loopback too, so that pre-signed upload and download URLs work from
        another process (the CLI); the handlers' S3 clients then name that endpoint in the URLs they sign.
        ``api_port`` and ``s3_port``: fixed ports (0: any free port)."""
        self.template = tpl.load(template_path)
        self.root = template_path.parent  # CodeUri and DefinitionUri are relative to the template
        self.extra_env = {**LOCAL_ENV, **(env or {})}
        self.functions: dict[str, LocalFunction] = {}
        self._mock: Any = None
        self._saved_env: dict[str, str | None] = {}
        self._original_invoke: Any = None
        self.queue_url = ""
        self._received: list[dict[str, Any]] = []
        self._received_lock = threading.Lock()
        self._front: ThreadingHTTPServer | None = None
        self.api_url = ""
        self.serve_s3 = serve_s3
        self.api_port = api_port
        self.s3_port = s3_port
        self.s3_url = ""
        self._s3_server: Any = None
        self._async_invocations: list[threading.Thread] = []
        #: Requests the handlers' HTTP client refuses before sending them (see ``client_faults``).
        self.client_faults = ClientFaultRegistry()
        self._original_client_factory: Any = None

    # --- lifecycle --------------------------------------------------------------------------------
    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LocalStack:
        for key, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",  # moto's fake credentials
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
        }.items():
            self._set_env(key, value)
        self._mock = mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
        self._mock.start()
        if self.serve_s3:
            self._serve_s3()
        self._route_lambda()
        self._serialised_dynamodb()
        self._plain_attribute_values()
        resources = self.template["Resources"]
        names = self._names(resources)
        resolver = tpl.Resolver(*names, pseudo=self._pseudo())
        self._create_storage(resources, resolver)
        self._create_functions(resources, resolver)
        self._create_state_machine(resources, resolver)
        self._serve_api()
        self._refusing_client()
        self._reset_package_caches()
        return self

    def stop(self) -> None:
        for thread in self._async_invocations:
            thread.join(timeout=30)
        self._async_invocations.clear()
        if self._s3_server is not None:
            self._s3_server.stop()
            self._s3_server = None
        if self._front is not None:
            self._front.shutdown()
            self._front.server_close()
            self._front = None
        if getattr(self, "_structure_serializer", None) is not None:
            from moto.core.serialize import ResponseSerializer

            ResponseSerializer._serialize_type_structure = self._structure_serializer  # type: ignore[method-assign]
            self._structure_serializer = None
        if getattr(self, "_unpatched", None):
            from moto.dynamodb.models import DynamoDBBackend

            for name, original in self._unpatched.items():
                setattr(DynamoDBBackend, name, original)
            self._unpatched = {}
        if getattr(self, "_unpatched_handler", None):
            from moto.dynamodb.responses import DynamoHandler

            for name, original in self._unpatched_handler.items():
                setattr(DynamoHandler, name, original)
            self._unpatched_handler = {}
        if self._original_invoke is not None:
            LambdaFunction.invoke = self._original_invoke
            self._original_invoke = None
        if self._original_client_factory is not None:
            from batchbridge import connections

            connections.new_client = self._original_client_factory
            self._original_client_factory = None
        self.client_faults.clear()
        if self._mock is not None:
            self._mock.stop()
            self._mock = None
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()
        self._reset_package_caches()

    def _set_env(self, key: str, value: str) -> None:
        if key not in self._saved_env:
            self._saved_env[key] = os.environ.get(key)
        os.environ[key] = value

    @staticmethod
    def _reset_package_caches() -> None:
        from batchbridge import aws, connections
        from batchbridge.config import get_settings
        from batchbridge.tasks import reset_default_deps

        aws.reset()
        connections.clear_cache()
        get_settings.cache_clear()
        reset_default_deps()

    # --- resources --------------------------------------------------------------------------------
    def _pseudo(self) -> dict[str, str]:
        params = {k: str(v.get("Default", "")) for k, v in self.template.get("Parameters", {}).items()}
        return {
            **params,
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": "aws",
            "AWS::StackName": PREFIX,
            "AWS::URLSuffix": "amazonaws.com",
        }

    def _names(self, resources: dict[str, Any]) -> tuple[dict[str, str], dict[tuple[str, str], str]]:
        refs: dict[str, str] = {}
        attrs: dict[tuple[str, str], str] = {}
        for logical_id, resource in resources.items():
            kind = resource["Type"]
            name = f"{PREFIX}-{logical_id}".lower() if kind == "AWS::S3::Bucket" else f"{PREFIX}-{logical_id}"
            if kind == "AWS::DynamoDB::Table":
                refs[logical_id] = name
                attrs[(logical_id, "Arn")] = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"
            elif kind == "AWS::S3::Bucket":
                refs[logical_id] = name
                attrs[(logical_id, "Arn")] = f"arn:aws:s3:::{name}"
            elif kind == "AWS::SNS::Topic":
                refs[logical_id] = f"arn:aws:sns:{REGION}:{ACCOUNT}:{name}"
                attrs[(logical_id, "TopicName")] = name
            elif kind == "AWS::Serverless::Function":
                refs[logical_id] = name
                attrs[(logical_id, "Arn")] = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
            elif kind == "AWS::Serverless::StateMachine":
                refs[logical_id] = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name}"
                attrs[(logical_id, "Name")] = name
            else:
                refs[logical_id] = name
                attrs[(logical_id, "Arn")] = f"arn:aws:local:{REGION}:{ACCOUNT}:{name}"
        self.names = refs
        return refs, attrs

    def _create_storage(self, resources: dict[str, Any], resolve: tpl.Resolver) -> None:
        for logical_id, resource in resources.items():
            props = resource.get("Properties", {})
            if resource["Type"] == "AWS::DynamoDB::Table":
                create_table(boto3.client("dynamodb", region_name=REGION), self.names[logical_id], props)
                self.table_name = self.names[logical_id]
            elif resource["Type"] == "AWS::S3::Bucket":
                boto3.client("s3", region_name=REGION).create_bucket(Bucket=self.names[logical_id])
                self.bucket_name = self.names[logical_id]
            elif resource["Type"] == "AWS::SNS::Topic":
                sns = boto3.client("sns", region_name=REGION)
                self.topic_arn = sns.create_topic(Name=resolve({"Fn::GetAtt": [logical_id, "TopicName"]}))[
                    "TopicArn"
                ]
                sqs = boto3.client("sqs", region_name=REGION)
                self.queue_url = sqs.create_queue(QueueName=f"{PREFIX}-subscriber")["QueueUrl"]
                queue_arn = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])[
                    "Attributes"
                ]["QueueArn"]
                sns.subscribe(TopicArn=self.topic_arn, Protocol="sqs", Endpoint=queue_arn)

    def _create_functions(self, resources: dict[str, Any], resolve: tpl.Resolver) -> None:
        glob = self.template.get("Globals", {}).get("Function", {})
        base_env = resolve(glob.get("Environment", {}).get("Variables", {}))
        iam = boto3.client("iam", region_name=REGION)
        role = iam.create_role(RoleName=f"{PREFIX}-lambda", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        zipped = io.BytesIO()
        with zipfile.ZipFile(zipped, "w") as archive:
            archive.writestr("app.py", "# routed to the real handler by the local runtime\n")
        lam = boto3.client("lambda", region_name=REGION)
        merged: dict[str, str] = {}
        for logical_id, resource in resources.items():
            if resource["Type"] != "AWS::Serverless::Function":
                continue
            props = resource["Properties"]
            env = {**base_env, **resolve(props.get("Environment", {}).get("Variables", {}))}
            env = {k: str(v) for k, v in env.items()}
            fn = LocalFunction(
                logical_id=logical_id,
                name=self.names[logical_id],
                code_dir=self.root / props["CodeUri"],
                handler=props.get("Handler", glob.get("Handler", "app.lambda_handler")),
                timeout=float(props.get("Timeout", glob.get("Timeout", 3))),
                memory_mb=int(props.get("MemorySize", glob.get("MemorySize", 128))),
                environment=env,
            )
            self.functions[logical_id] = fn
            lam.create_function(
                FunctionName=fn.name,
                Runtime=glob.get("Runtime", "python3.13"),
                Role=role,
                Handler=fn.handler,
                Code={"ZipFile": zipped.getvalue()},
                Timeout=int(fn.timeout),
            )
            for key, value in env.items():
                if key in merged and merged[key] != value:
                    raise RuntimeError(
                        f"functions disagree on {key}; the in-process runtime shares one environment"
                    )
                merged[key] = value
        # All handlers run in this process: they share one environment, checked consistent above.
        for key, value in {**merged, **self.extra_env}.items():
            self._set_env(key, value)

    def _create_state_machine(self, resources: dict[str, Any], resolve: tpl.Resolver) -> None:
        for logical_id, resource in resources.items():
            if resource["Type"] != "AWS::Serverless::StateMachine":
                continue
            props = resource["Properties"]
            text = (self.root / props["DefinitionUri"]).read_text()
            for key, value in resolve(props.get("DefinitionSubstitutions", {})).items():
                text = text.replace("${" + key + "}", str(value))
            json.loads(text)  # the substituted definition must be valid JSON, as in AWS
            self.definition = text
            sfn = boto3.client("stepfunctions", region_name=REGION)
            self.state_machine_arn = sfn.create_state_machine(
                name=resolve({"Fn::GetAtt": [logical_id, "Name"]}),
                definition=text,
                roleArn=f"arn:aws:iam::{ACCOUNT}:role/{PREFIX}-states",
                type=props.get("Type", "STANDARD"),
            )["stateMachineArn"]

    def _serve_api(self) -> None:
        """Serve the API function over HTTP on loopback, as API Gateway would, so that provider
        simulators can reach the callback route. ``CALLBACK_BASE_URL`` points at it."""
        stack = self

        class Front(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode("utf-8", "replace") if length else None
                parts = urlsplit(self.path)
                path = parts.path.removeprefix("/v1")
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                status, body = stack.api(
                    self.command, path, raw_body=raw, headers=dict(self.headers.items()), query=query or None
                )
                payload = json.dumps(body).encode()
                # A caller that hung up (a simulator giving up on its callback) only loses its answer.
                with suppress(BrokenPipeError, ConnectionResetError):
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self._front = ThreadingHTTPServer(("127.0.0.1", self.api_port), Front)
        self._front.daemon_threads = True
        threading.Thread(target=self._front.serve_forever, name="local-api", daemon=True).start()
        host, port = self._front.server_address[:2]
        self.api_url = f"http://{host}:{port}/v1"
        self._set_env("CALLBACK_BASE_URL", self.api_url)

    def _serve_s3(self) -> None:
        """moto's S3 over HTTP on loopback, in this process: it serves the same in-process backend the
        handlers use, so an object PUT to a pre-signed URL by another process is there for them."""
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request on the console
        self._s3_server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.s3_port, verbose=False)
        self._s3_server.start()
        host, port = self._s3_server.get_host_and_port()
        self.s3_url = f"http://{host}:{port}"
        self._set_env("AWS_ENDPOINT_URL_S3", self.s3_url)  # what the handlers' S3 clients sign for
        self._set_env("MOTO_S3_CUSTOM_ENDPOINTS", self.s3_url)  # ... while their own calls stay in-process

    def _refusing_client(self) -> None:
        """The handlers' one HTTP client sends through a transport that refuses what
        :attr:`client_faults` aims at a vendor address (nothing, until a test aims something)."""
        from batchbridge import connections

        self._original_client_factory = connections.new_client
        connections.new_client = refusing_factory(connections.new_client, self.client_faults)

    def _serialised_dynamodb(self) -> None:
        """DynamoDB checks a write's condition and applies it atomically, and a read never sees a write
        half-done. moto does neither across threads: two conditional writes could both win, and a query
        that iterates the table while another thread adds an item fails ("dictionary changed size during
        iteration"). The local runtime runs many tasks at once, so every operation takes one lock."""
        from moto.dynamodb.models import DynamoDBBackend
        from moto.dynamodb.responses import DynamoHandler

        lock = threading.RLock()
        self.dynamodb_lock = lock
        self._unpatched: dict[str, Any] = {}
        operations = (
            "put_item",
            "update_item",
            "delete_item",
            "transact_write_items",
            "batch_write_item",
            "get_item",
            "batch_get_item",
            "transact_get_items",
            "query",
            "scan",
        )
        for name in operations:
            original = getattr(DynamoDBBackend, name, None)
            if original is None:
                continue
            self._unpatched[name] = original

            def atomic(backend: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
                with lock:
                    return _original(backend, *args, **kwargs)

            setattr(DynamoDBBackend, name, atomic)
        # The backend hands back the stored items themselves, and moto's handler turns them into the
        # answer after the backend call returns, while another thread's update may be changing them in
        # place ("dictionary changed size during iteration", once a 500 from GET /batches/{id}). The
        # handler's whole operation, answer included, takes the same lock.
        self._unpatched_handler: dict[str, Any] = {}
        for name in operations:
            handler_original = getattr(DynamoHandler, name, None)
            if handler_original is None:
                continue
            self._unpatched_handler[name] = handler_original

            def atomic_operation(handler: Any, _original: Any = handler_original) -> Any:
                with lock:
                    return _original(handler)

            setattr(DynamoHandler, name, atomic_operation)
        DynamoDBBackend.transact_write_items = _item_rollback_transactions(  # type: ignore[method-assign]
            DynamoDBBackend.transact_write_items, lock
        )

    def _plain_attribute_values(self) -> None:
        """moto answers DynamoDB reads through its generic serializer, which walks every attribute value
        member by member against the service model: most of the CPU a batch costs locally (a 1,000-row
        query took over a second). A DynamoDB attribute value is already its wire form (``{"S": ...}``,
        ``{"M": {...}}``; only binary needs base64), so it is written as it is."""
        from moto.core.serialize import ResponseSerializer

        original = ResponseSerializer._serialize_type_structure
        self._structure_serializer = original

        def serialize_structure(serializer: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
            if (
                shape.name == "AttributeValue"
                and isinstance(value, dict)
                and serializer.service_model.service_name == "dynamodb"
            ):
                serializer._default_serialize(serialized, _wire_attribute_value(value), shape, key)
                return
            original(serializer, serialized, value, shape, key)

        ResponseSerializer._serialize_type_structure = serialize_structure  # type: ignore[method-assign]

    # --- Lambda routing ---------------------------------------------------------------------------
    def _route_lambda(self) -> None:
        stack = self
        self._original_invoke = LambdaFunction.invoke

        def invoke(fn: LambdaFunction, body: str, request_headers: Any, response_headers: Any) -> bytes:
            local = next((f for f in stack.functions.values() if f.name == fn.function_name), None)
            if local is None:
                raise RuntimeError(f"no local handler for {fn.function_name}")
            event = json.loads(body) if body else {}
            invocation = {k.lower(): v for k, v in dict(request_headers or {}).items()}
            if invocation.get("x-amz-invocation-type") == "Event":
                # Lambda queues an asynchronous event and answers 202 at once; the function runs later.
                thread = threading.Thread(
                    target=stack._invoke_async, args=(local, event), name=f"async-{local.logical_id}"
                )
                stack._async_invocations.append(thread)
                thread.start()
                return b""
            try:
                result = local.invoke(event)
            except Exception as exc:  # answer as Lambda does for an unhandled error
                response_headers["x-amz-function-error"] = "Unhandled"
                return json.dumps(
                    {
                        "errorType": type(exc).__name__,
                        "errorMessage": str(exc),
                        "stackTrace": traceback.format_exception(exc)[-5:],
                    }
                ).encode()
            return json.dumps(result).encode()

        LambdaFunction.invoke = invoke  # type: ignore[method-assign]

    @staticmethod
    def _invoke_async(local: LocalFunction, event: Any) -> None:
        """An asynchronous invocation; Lambda would retry a failure twice, the local stack reports it."""
        try:
            local.invoke(event)
        except Exception:
            traceback.print_exc()

    # --- using the stack --------------------------------------------------------------------------
    def add_connection(
        self,
        name: str,
        provider: str,
        base_url: str,
        credentials: dict[str, str],
        settings: dict[str, Any] | None = None,
        *,
        clear_cache: bool = True,
    ) -> None:
        """Create or update the connection's secret. ``clear_cache=False`` leaves the handlers' cached
        copy alone, as a rotation done elsewhere would."""
        secret = {
            "provider": provider,
            "baseUrl": base_url,
            "credentials": credentials,
            "settings": settings or {},
        }
        client = boto3.client("secretsmanager", region_name=REGION)
        secret_id = os.environ["CONNECTION_SECRET_PREFIX"] + name
        try:
            client.create_secret(Name=secret_id, SecretString=json.dumps(secret))
        except client.exceptions.ResourceExistsException:
            client.put_secret_value(SecretId=secret_id, SecretString=json.dumps(secret))
        if clear_cache:
            from batchbridge import connections

            connections.clear_cache()

    def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
        raw_body: str | None = None,
    ) -> tuple[int, Any]:
        """Call the api function with an API Gateway (REST, proxy) event, as the deployed API would."""
        text = raw_body if raw_body is not None else (None if body is None else json.dumps(body))
        event = proxy_event(method, path, body=text, headers=headers, query=query)
        response = self.functions["ApiFunction"].invoke(event)
        payload = response.get("body")
        if response.get("isBase64Encoded"):
            payload = base64.b64decode(payload).decode()
        return response["statusCode"], json.loads(payload) if payload else None

    def batch(self, batch_id: str) -> dict[str, Any]:
        status, body = self.api("GET", f"/batches/{batch_id}")
        if status != 200:
            raise RuntimeError(f"GET /batches/{batch_id} answered {status}: {body}")
        return body

    def wait_for_batch(
        self, batch_id: str, timeout: float = 120.0, on_poll: Callable[[dict[str, Any]], None] | None = None
    ) -> dict[str, Any]:
        """Poll the API until the batch's execution has ended; returns the final batch view."""
        sfn = boto3.client("stepfunctions", region_name=REGION)
        arn = f"{self.state_machine_arn.replace(':stateMachine:', ':execution:')}:{batch_id}"
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            view = self.batch(batch_id)
            if on_poll:
                on_poll(view)
            execution = sfn.describe_execution(executionArn=arn)
            if execution["status"] != "RUNNING" and view["status"] in TERMINAL:
                return view
            time.sleep(0.2)
        raise TimeoutError(f"batch {batch_id} did not finish within {timeout}s")

    @staticmethod
    def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > end:
                raise TimeoutError("condition not met in time")
            time.sleep(0.1)

    @property
    def repo(self) -> Any:
        """The repository the handlers use, on this stack's table (typed batch and chunk records)."""
        from batchbridge.repository.dynamo import DynamoRepository

        return DynamoRepository(self.table_name)

    def execution_history(self, batch_id: str) -> list[dict[str, Any]]:
        sfn = boto3.client("stepfunctions", region_name=REGION)
        arn = f"{self.state_machine_arn.replace(':stateMachine:', ':execution:')}:{batch_id}"
        events: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"executionArn": arn, "maxResults": 1000}
        while True:
            page = sfn.get_execution_history(**kwargs)
            events.extend(page["events"])
            if not page.get("nextToken"):
                return events
            kwargs["nextToken"] = page["nextToken"]

    def execution(self, batch_id: str) -> dict[str, Any]:
        sfn = boto3.client("stepfunctions", region_name=REGION)
        arn = f"{self.state_machine_arn.replace(':stateMachine:', ':execution:')}:{batch_id}"
        return dict(sfn.describe_execution(executionArn=arn))

    def received_events(self, batch_id: str | None = None, wait: float = 0.0) -> list[dict[str, Any]]:
        """Completion events as an SQS subscriber of the topic received them (with message attributes)."""
        sqs = boto3.client("sqs", region_name=REGION)
        end = time.monotonic() + wait
        while True:
            for message in sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get(
                "Messages", []
            ):
                envelope = json.loads(message["Body"])
                attributes = {k: v["Value"] for k, v in envelope.get("MessageAttributes", {}).items()}
                with self._received_lock:
                    self._received.append(
                        {"event": json.loads(envelope["Message"]), "attributes": attributes}
                    )
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
            with self._received_lock:
                found = [
                    r for r in self._received if batch_id is None or r["event"]["data"]["batchId"] == batch_id
                ]
            if found or time.monotonic() >= end:
                return found
            time.sleep(0.1)

    def result_lines(self, batch_id: str) -> list[dict[str, Any]]:
        from batchbridge.objects import results_key

        body = boto3.client("s3", region_name=REGION).get_object(
            Bucket=self.bucket_name, Key=results_key(batch_id)
        )
        return [json.loads(line) for line in body["Body"].read().splitlines() if line]

    def outcome_rows(self, batch_id: str) -> list[dict[str, Any]]:
        table = boto3.resource("dynamodb", region_name=REGION).Table(self.table_name)
        rows: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :o)",
            "ExpressionAttributeValues": {":pk": f"BATCH#{batch_id}", ":o": "OUTCOME#"},
        }
        while True:
            page = table.query(**kwargs)
            rows.extend(page["Items"])
            if "LastEvaluatedKey" not in page:
                return rows
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def all_items(self) -> Iterator[dict[str, Any]]:
        table = boto3.resource("dynamodb", region_name=REGION).Table(self.table_name)
        kwargs: dict[str, Any] = {}
        while True:
            page = table.scan(**kwargs)
            yield from page["Items"]
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def all_objects(self) -> Iterator[tuple[str, bytes]]:
        s3 = boto3.client("s3", region_name=REGION)
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket_name):
            for obj in page.get("Contents", []):
                yield obj["Key"], s3.get_object(Bucket=self.bucket_name, Key=obj["Key"])["Body"].read()


def _wire_attribute_value(value: dict[str, Any]) -> dict[str, Any]:
    """A DynamoDB attribute value as it goes on the wire: binary as base64, maps and lists recursively."""
    wire: dict[str, Any] = {}
    for kind, inner in value.items():
        if kind == "M":
            wire[kind] = {name: _wire_attribute_value(v) for name, v in inner.items()}
        elif kind == "L":
            wire[kind] = [_wire_attribute_value(v) for v in inner]
        elif kind == "B":
            wire[kind] = _base64(inner)
        elif kind == "BS":
            wire[kind] = [_base64(v) for v in inner]
        else:
            wire[kind] = inner
    return wire


def _base64(value: Any) -> Any:
    return base64.b64encode(value).decode("ascii") if isinstance(value, bytes | bytearray) else value


def _item_rollback_transactions(atomic_transact: Any, lock: threading.RLock) -> Any:
    """moto undoes a failed transaction by restoring a deep copy of every table it touched, taken before
    it starts: a copy of the whole table, outcome rows and all, for every chunk claim - seconds per claim
    once the table holds a few thousand rows. Under the one DynamoDB lock, undoing the items the
    transaction touched is the same: their copies are taken instead, and the tables are left alone."""
    import copy as copy_module

    from moto.dynamodb import models as ddb_models
    from moto.dynamodb.models.table import Table

    class _TablesAsThey:
        @staticmethod
        def deepcopy(value: Any, memo: Any = None) -> Any:
            return value if isinstance(value, Table) else copy_module.deepcopy(value, memo)

    def transact_write_items(backend: Any, transact_items: list[dict[str, Any]]) -> Any:
        with lock:
            touched: list[tuple[Any, Any, Any, Any]] = []
            for entry in transact_items:
                _, op = next(iter(entry.items()))
                table = backend.tables.get(op.get("TableName"))
                if table is None:
                    continue
                key = op.get("Key") or {
                    k: op["Item"][k]
                    for k in (table.hash_key_attr, table.range_key_attr)
                    if k and k in op["Item"]
                }
                hash_value, range_value = backend.get_keys_value(table, key)
                before = table.get_item(hash_value, range_value)
                touched.append((table, hash_value, range_value, copy_module.deepcopy(before)))
            ddb_models.copy = _TablesAsThey  # type: ignore[assignment]
            try:
                return atomic_transact(backend, transact_items)
            except Exception:
                for table, hash_value, range_value, before in reversed(touched):
                    if table.get_item(hash_value, range_value) is not None:
                        table.delete_item(hash_value, range_value)
                    if before is not None:
                        table.put_item(before.to_json()["Attributes"])
                raise
            finally:
                ddb_models.copy = copy_module  # type: ignore[assignment]

    return transact_write_items


def create_table(ddb: Any, name: str, props: dict[str, Any]) -> None:
    """Create table ``name`` as the template's ``AWS::DynamoDB::Table`` properties ``props`` define it:
    keys, attributes, billing, every global secondary index, and the TTL attribute."""
    ddb.create_table(
        TableName=name,
        KeySchema=props["KeySchema"],
        AttributeDefinitions=props["AttributeDefinitions"],
        BillingMode=props.get("BillingMode", "PAY_PER_REQUEST"),
        **(
            {"GlobalSecondaryIndexes": props["GlobalSecondaryIndexes"]}
            if props.get("GlobalSecondaryIndexes")
            else {}
        ),
    )
    if ttl := props.get("TimeToLiveSpecification"):
        ddb.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)


def proxy_event(
    method: str,
    path: str,
    *,
    body: str | None = None,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    resource: str | None = None,
    params: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The API Gateway REST proxy event the deployed API would pass for this request. ``resource`` and
    ``params`` default to the route the path matches."""
    if resource is None:
        resource, params = _match_route(path)
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "multiValueHeaders": {},
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": {k: [v] for k, v in (query or {}).items()} or None,
        "pathParameters": params or None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": method,
            "path": f"/v1{path}",
            "stage": "v1",
            "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": "127.0.0.1"},
            "accountId": ACCOUNT,
            "apiId": "local",
        },
        "body": body,
        "isBase64Encoded": False,
    }


def _match_route(path: str) -> tuple[str, dict[str, str]]:
    parts = path.strip("/").split("/")
    if len(parts) == 3 and parts[0] == "callbacks":
        return "/callbacks/{batch_id}/{token}", {"batch_id": parts[1], "token": parts[2]}
    if len(parts) >= 2 and parts[0] == "uploads":
        rest = "/" + "/".join(parts[2:]) if len(parts) > 2 else ""
        return "/uploads/{upload_id}" + rest, {"upload_id": parts[1]}
    if len(parts) >= 2 and parts[0] == "batches":
        rest = "/" + "/".join(parts[2:]) if len(parts) > 2 else ""
        return "/batches/{batch_id}" + rest, {"batch_id": parts[1]}
    return path, {}
