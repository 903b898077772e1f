"""The BatchBridge API client: SigV4-signed calls (botocore's signer, the standard AWS credential chain)
over httpx, file uploads to pre-signed URLs, waiting, downloads.

>>> client = BatchBridgeClient("https://abc123.execute-api.eu-west-1.amazonaws.com/v1")  # doctest: +SKIP
>>> batch = client.submit_file("jobs.jsonl", provider="ivvy", connection="ivvy-prod")     # doctest: +SKIP
>>> client.wait(batch["batchId"])["status"]                                              # doctest: +SKIP
'SUCCEEDED'
"""

from __future__ import annotations

import ipaddress
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import botocore.session
import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

TERMINAL = frozenset(
    {"SUCCEEDED", "PARTIALLY_SUCCEEDED", "FAILED", "TIMED_OUT", "CANCELLED", "NEEDS_ATTENTION"}
)
FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv"}
API_URL_ENV = "BATCHBRIDGE_API_URL"
_COPY_BYTES = 1024 * 1024


class BatchBridgeError(Exception):
    """Anything the client cannot do; ``str()`` is one line a person can act on."""


class TimedOutError(BatchBridgeError):
    """Waiting for an upload or a batch took longer than the caller allowed."""


class ApiError(BatchBridgeError):
    """The API answered with an error: ``{"error": {"code", "message", "details"}}``."""

    def __init__(self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None):
        super().__init__(f"{code}: {message} (HTTP {status})")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []


class InvalidFileError(BatchBridgeError):
    """The uploaded file was refused; ``problems`` are ``"FILE:line N: field: message"`` lines."""

    def __init__(self, path: str, error: dict[str, Any]):
        self.path = path
        self.error = error
        self.problems = [f"{path}:{d['field']}: {d['message']}" for d in error.get("details", [])]
        first = self.problems[0] if self.problems else f"{path}: {error.get('message', 'refused')}"
        more = len(self.problems) - 1
        super().__init__(first + (f" (and {more} more problem(s))" if more > 0 else ""))


def format_of(path: str | Path) -> str:
    """``jsonl`` or ``csv``, from the file's extension."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise BatchBridgeError(
            f"{path}: cannot tell the format from {suffix or 'no extension'!r}; use .jsonl or .csv"
        )
    return FORMATS[suffix]


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def api_url_from_stack(stack_name: str, *, region: str | None = None, session: Any = None) -> str:
    """The ``ApiUrl`` output of a deployed BatchBridge stack."""
    session = session or botocore.session.get_session()
    cloudformation = session.create_client(
        "cloudformation", region_name=region or session.get_config_variable("region")
    )
    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except Exception as exc:  # botocore's ClientError, NoCredentialsError, NoRegionError ...
        raise BatchBridgeError(f"cannot read stack {stack_name!r}: {exc}") from exc
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    if "ApiUrl" not in outputs:
        raise BatchBridgeError(f"stack {stack_name!r} has no ApiUrl output; is it a BatchBridge stack?")
    return str(outputs["ApiUrl"])


def resolve_api_url(api_url: str | None = None, stack: str | None = None, region: str | None = None) -> str:
    """``api_url``, else ``$BATCHBRIDGE_API_URL``, else the ``ApiUrl`` output of ``stack``."""
    if api_url:
        return api_url
    if stack:
        return api_url_from_stack(stack, region=region)
    if os.environ.get(API_URL_ENV):
        return os.environ[API_URL_ENV]
    raise BatchBridgeError(f"no API URL: pass --api-url, set {API_URL_ENV}, or name the stack with --stack")


class BatchBridgeClient:
    """One API, one credential chain. ``session`` is a botocore session (credentials and region);
    ``http`` an ``httpx.Client`` to share. Against a loopback URL (``batchbridge local serve``) requests go
    unsigned when no credentials are found, as the local stack does not check them."""

    def __init__(
        self,
        api_url: str,
        *,
        session: Any = None,
        region: str | None = None,
        http: httpx.Client | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.session = session or botocore.session.get_session()
        self.region = (
            region or self._region_from_url() or self.session.get_config_variable("region") or "us-east-1"
        )
        self.http = http or httpx.Client(timeout=httpx.Timeout(timeout, connect=10.0))
        self._loopback = _is_loopback(self.api_url)

    def _region_from_url(self) -> str | None:
        parts = (urlsplit(self.api_url).hostname or "").split(".")
        return parts[2] if len(parts) > 3 and parts[1] == "execute-api" else None

    # --- transport ------------------------------------------------------------------------------------
    def _headers(self, method: str, url: str, body: bytes | None, headers: dict[str, str]) -> dict[str, str]:
        credentials = self.session.get_credentials()
        if credentials is None:
            if self._loopback:
                return headers
            raise BatchBridgeError(
                "no AWS credentials found (environment, ~/.aws/credentials or config, SSO, or an instance "
                "role); run `aws configure` or set AWS_PROFILE"
            )
        request = AWSRequest(method=method, url=url, data=body or b"", headers=headers)
        SigV4Auth(credentials.get_frozen_credentials(), "execute-api", self.region).add_auth(request)
        return dict(request.headers.items())

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: dict[str, str | None] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """One signed API call; the parsed JSON answer, or :class:`ApiError`."""
        url = str(
            httpx.URL(self.api_url + path, params={k: v for k, v in (query or {}).items() if v is not None})
        )
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        sent = (
            {"Content-Type": "application/json", **(headers or {})}
            if data is not None
            else dict(headers or {})
        )
        try:
            response = self.http.request(
                method, url, content=data, headers=self._headers(method, url, data, sent)
            )
        except httpx.HTTPError as exc:
            raise BatchBridgeError(f"cannot reach the API at {self.api_url}: {exc}") from exc
        try:
            answer = response.json() if response.content else None
        except ValueError:
            raise BatchBridgeError(
                f"{method} {path} answered HTTP {response.status_code} with a body that is not JSON"
            ) from None
        if response.status_code >= 400:
            error = (answer or {}).get("error") if isinstance(answer, dict) else None
            if isinstance(error, dict):
                raise ApiError(
                    response.status_code,
                    str(error.get("code")),
                    str(error.get("message")),
                    error.get("details"),
                )
            message = (answer or {}).get("message") if isinstance(answer, dict) else None  # API Gateway's own
            raise ApiError(response.status_code, "HTTP_ERROR", str(message or response.reason_phrase))
        return answer

    # --- uploads --------------------------------------------------------------------------------------
    def create_upload(
        self, provider: str, fmt: str, size_bytes: int, options: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"provider": provider, "format": fmt, "sizeBytes": size_bytes}
        if options is not None:
            body["options"] = options
        return dict(self.request("POST", "/uploads", body))

    def send_file(
        self, path: str | Path, upload: dict[str, Any], on_bytes: Callable[[int], None] | None = None
    ) -> list[dict[str, Any]] | None:
        """PUT the file to the pre-signed upload (streamed, a part at a time for multipart); the parts'
        ETags for completing a multipart upload, else None."""
        path = Path(path)

        def read(start: int, length: int) -> Iterator[bytes]:
            with path.open("rb") as handle:
                handle.seek(start)
                left = length
                while left > 0:
                    piece = handle.read(min(_COPY_BYTES, left))
                    if not piece:
                        return
                    left -= len(piece)
                    if on_bytes:
                        on_bytes(len(piece))
                    yield piece

        def put(url: str, start: int, length: int, headers: dict[str, str]) -> httpx.Response:
            try:
                response = self.http.put(
                    url, content=read(start, length), headers={**headers, "Content-Length": str(length)}
                )
            except httpx.HTTPError as exc:
                raise BatchBridgeError(f"{path}: the upload failed: {exc}") from exc
            if response.status_code >= 300:
                raise BatchBridgeError(f"{path}: S3 refused the upload (HTTP {response.status_code})")
            return response

        size = path.stat().st_size
        if upload["method"] == "PUT":
            put(upload["url"], 0, size, upload.get("headers", {}))
            return None
        part_size = int(upload["partSizeBytes"])
        parts = []
        for part in upload["parts"]:
            start = (part["partNumber"] - 1) * part_size
            response = put(part["url"], start, min(part_size, size - start), {})
            parts.append({"partNumber": part["partNumber"], "etag": response.headers["ETag"]})
        return parts

    def complete_upload(self, upload_id: str, parts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        return dict(self.request("POST", f"/uploads/{upload_id}/complete", {"parts": parts} if parts else {}))

    def get_upload(self, upload_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/uploads/{upload_id}"))

    def wait_for_upload(
        self, upload_id: str, *, timeout: float = 1800, interval: float = 0.5
    ) -> dict[str, Any]:
        """Poll until the upload is VALID or INVALID."""
        end = time.monotonic() + timeout
        while True:
            view = self.get_upload(upload_id)
            if view["status"] in ("VALID", "INVALID"):
                return view
            if time.monotonic() > end:
                raise TimedOutError(f"upload {upload_id} was still {view['status']} after {timeout:.0f} s")
            time.sleep(interval)
            interval = min(interval * 1.5, 5.0)

    def upload_file(
        self,
        path: str | Path,
        provider: str,
        *,
        options: dict[str, Any] | None = None,
        on_bytes: Callable[[int], None] | None = None,
        timeout: float = 1800,
    ) -> dict[str, Any]:
        """Upload a file of jobs and wait for its validation: the VALID upload, or InvalidFileError."""
        path = Path(path)
        if not path.is_file():
            raise BatchBridgeError(f"{path}: no such file")
        created = self.create_upload(provider, format_of(path), path.stat().st_size, options)
        parts = self.send_file(path, created["upload"], on_bytes)
        self.complete_upload(created["uploadId"], parts)
        view = self.wait_for_upload(created["uploadId"], timeout=timeout)
        if view["status"] == "INVALID":
            raise InvalidFileError(str(path), view.get("error") or {})
        return view

    # --- batches --------------------------------------------------------------------------------------
    def create_batch(
        self,
        provider: str,
        connection: str,
        *,
        upload_id: str | None = None,
        jobs: list[dict[str, Any]] | None = None,
        client_reference: str | None = None,
        options: dict[str, Any] | None = None,
        deadline_seconds: int | None = None,
        idempotency_key: str | None = None,
        retry_of: str | None = None,
    ) -> dict[str, Any]:
        """``POST /batches`` with inline ``jobs`` or an ``upload_id`` (exactly one); ``retry_of`` links the
        new batch to a finished one whose jobs it retries."""
        if (upload_id is None) == (jobs is None):
            raise BatchBridgeError("give exactly one of jobs or upload_id")
        body: dict[str, Any] = {"provider": provider, "connection": connection}
        body |= {"uploadId": upload_id} if upload_id is not None else {"jobs": jobs}
        for key, value in (
            ("clientReference", client_reference),
            ("options", options),
            ("deadlineSeconds", deadline_seconds),
            ("retryOf", retry_of),
        ):
            if value is not None:
                body[key] = value
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return dict(self.request("POST", "/batches", body, headers=headers))

    def submit_file(
        self,
        path: str | Path,
        provider: str,
        connection: str,
        *,
        client_reference: str | None = None,
        options: dict[str, Any] | None = None,
        deadline_seconds: int | None = None,
        on_bytes: Callable[[int], None] | None = None,
        retry_of: str | None = None,
    ) -> dict[str, Any]:
        """Upload, validate, and start a batch from the file; the 202 answer of ``POST /batches``."""
        upload = self.upload_file(path, provider, options=options, on_bytes=on_bytes)
        return self.start_from_upload(
            upload["uploadId"],
            provider,
            connection,
            client_reference=client_reference,
            options=options,
            deadline_seconds=deadline_seconds,
            retry_of=retry_of,
        )

    def start_from_upload(
        self,
        upload_id: str,
        provider: str,
        connection: str,
        *,
        client_reference: str | None = None,
        options: dict[str, Any] | None = None,
        deadline_seconds: int | None = None,
        retry_of: str | None = None,
    ) -> dict[str, Any]:
        """Start the batch of a VALID upload; its Idempotency-Key is the upload's, so a start repeated
        after a lost answer starts nothing new."""
        return self.create_batch(
            provider,
            connection,
            upload_id=upload_id,
            client_reference=client_reference,
            options=options,
            deadline_seconds=deadline_seconds,
            idempotency_key=f"upload-{upload_id}",
            retry_of=retry_of,
        )

    def get_batch(self, batch_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/batches/{batch_id}"))

    def list_batches(
        self,
        *,
        status: str | None = None,
        provider: str | None = None,
        client_reference: str | None = None,
        limit: int = 25,
    ) -> Iterator[dict[str, Any]]:
        """Batch summaries, newest first, following ``nextToken`` until ``limit`` summaries."""
        query: dict[str, str | None] = {
            "status": status,
            "provider": provider,
            "clientReference": client_reference,
        }
        token: str | None = None
        seen = 0
        while seen < limit:
            page = self.request(
                "GET", "/batches", query={**query, "limit": str(min(100, limit - seen)), "nextToken": token}
            )
            for item in page["items"][: limit - seen]:
                seen += 1
                yield item
            token = page.get("nextToken")
            if not token:
                return

    def wait(
        self,
        batch_id: str,
        *,
        timeout: float = 24 * 3600,
        interval: float = 2.0,
        on_poll: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll the batch until it has ended; returns its final view."""
        end = time.monotonic() + timeout
        while True:
            view = self.get_batch(batch_id)
            if on_poll:
                on_poll(view)
            if view["status"] in TERMINAL:
                return view
            if time.monotonic() > end:
                raise TimedOutError(f"batch {batch_id} was still {view['status']} after {timeout:.0f} s")
            time.sleep(interval)

    def results_link(self, batch_id: str, outcome: str | None = None) -> dict[str, Any]:
        query = {"format": "file", "outcome": outcome}
        return dict(self.request("GET", f"/batches/{batch_id}/results", query=query))

    def download_results(
        self, batch_id: str, destination: str | Path, *, outcome: str | None = None, jobs_only: bool = False
    ) -> int:
        """Write the batch's results file (of one ``outcome`` kind, when given) to ``destination``; returns
        the lines written. Every line is checked to be of the kind asked for: a server that sent others
        fails the download, and nothing is left at ``destination``. With ``jobs_only`` each line is the job
        as it was submitted, nothing else: a jobs file to fix and submit again (``retry_of``)."""
        link = self.results_link(batch_id, outcome)
        destination = Path(destination)
        count = 0
        with tempfile.NamedTemporaryFile("wb", dir=destination.parent, delete=False, suffix=".part") as spool:
            try:
                with self.http.stream("GET", link["url"]) as response:
                    if response.status_code != 200:
                        raise BatchBridgeError(
                            f"the results file could not be read (HTTP {response.status_code})"
                        )
                    for line in response.iter_lines():
                        if not line:
                            continue
                        record = json.loads(line)
                        if outcome is not None and record.get("outcome") != outcome:
                            raise BatchBridgeError(
                                f"the API sent outcomes other than {outcome!r} for outcome={outcome}: "
                                "it does not serve outcome files yet"
                            )
                        if jobs_only:
                            line = json.dumps(record["job"], separators=(",", ":"), ensure_ascii=False)
                        spool.write(line.encode() + b"\n")
                        count += 1
            except BaseException:
                spool.close()
                os.unlink(spool.name)
                raise
        os.replace(spool.name, destination)
        return count

    def retry(
        self,
        batch_id: str,
        *,
        outcomes: tuple[str, ...] = ("failed", "not_processed"),
        client_reference: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """``POST /batches/{id}/retry``: a new batch of the jobs with those outcomes, linked to the old."""
        body: dict[str, Any] = {"outcomes": list(outcomes)}
        if client_reference is not None:
            body["clientReference"] = client_reference
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return dict(self.request("POST", f"/batches/{batch_id}/retry", body, headers=headers))

    def cancel(self, batch_id: str) -> dict[str, Any]:
        return dict(self.request("POST", f"/batches/{batch_id}/cancel"))

    def providers(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/providers")["providers"])
