"""The HTTP API's logic: create a batch, read its status and outcomes, list providers."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
import uuid
from enum import StrEnum
from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from batchbridge import aws
from batchbridge.config import get_settings
from batchbridge.connections import load_connection
from batchbridge.errors import BatchBridgeError, IdempotencyConflictError
from batchbridge.models import BatchStatus, OutcomeKind
from batchbridge.observability import logger
from batchbridge.providers.base import Capabilities, Provider, all_capabilities, provider_class
from batchbridge.store import Store, now_iso, request_key, results_key

MAX_ERRORS_REPORTED = 10
IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


class RequestError(BatchBridgeError):
    """A client error: carries the HTTP status and, where it applies, the field at fault."""

    def __init__(self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None):
        super().__init__(message, code=code)
        self.status = status
        self.details = details or []

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        return {"error": error}


class CreateBatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    provider: str = Field(min_length=1, max_length=64)
    connection: str = Field(min_length=1, max_length=64)
    jobs: list[dict[str, Any]] = Field(min_length=1)
    options: dict[str, Any] = Field(default_factory=dict)
    client_reference: str | None = Field(default=None, alias="clientReference", max_length=256)
    deadline_seconds: int | None = Field(default=None, alias="deadlineSeconds", ge=1)


def _details(exc: ValidationError, prefix: str = "") -> list[dict[str, Any]]:
    out = []
    for err in exc.errors()[:MAX_ERRORS_REPORTED]:
        path = prefix
        for part in err["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        out.append({"field": path or "body", "message": err["msg"]})
    return out


def parse_create(body: str | None, *, is_base64: bool = False) -> CreateBatchRequest:
    settings = get_settings()
    if body is None or body == "":
        raise RequestError(400, "EMPTY_BODY", "the request has no body; send a JSON object")
    if is_base64:
        import base64

        body = base64.b64decode(body).decode("utf-8", "replace")
    if len(body.encode()) > settings.max_body_bytes:
        raise RequestError(
            413, "BODY_TOO_LARGE", f"the body is larger than {settings.max_body_bytes} bytes; split the batch"
        )
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise RequestError(
            400, "MALFORMED_JSON", f"the body is not valid JSON: {exc.msg} at position {exc.pos}"
        ) from None
    if not isinstance(data, dict):
        raise RequestError(400, "INVALID_BODY", "the body must be a JSON object")
    try:
        return CreateBatchRequest.model_validate(data)
    except ValidationError as exc:
        details = _details(exc)
        raise RequestError(
            422, "VALIDATION_FAILED", "; ".join(f"{d['field']}: {d['message']}" for d in details), details
        ) from None


def validate_for_provider(request: CreateBatchRequest) -> tuple[type[Provider], dict[str, Any], int]:
    """Check provider, jobs, options and deadline; returns the class, clean options and deadline seconds."""
    try:
        cls = provider_class(request.provider)
    except BatchBridgeError as exc:
        raise RequestError(
            422, exc.code, exc.message, [{"field": "provider", "message": exc.message}]
        ) from None
    caps: Capabilities = cls.capabilities
    if len(request.jobs) > caps.max_jobs_per_batch:
        message = (
            f"{len(request.jobs)} jobs is more than {caps.name}'s maximum "
            f"of {caps.max_jobs_per_batch} per batch"
        )
        raise RequestError(422, "TOO_MANY_JOBS", message, [{"field": "jobs", "message": message}])
    details: list[dict[str, Any]] = []
    for i, job in enumerate(request.jobs):
        try:
            cls.job_model.model_validate(job)
        except ValidationError as exc:
            details.extend(_details(exc, f"jobs[{i}]"))
            if len(details) >= MAX_ERRORS_REPORTED:
                break
    try:
        options = cls.options_model.model_validate(request.options).model_dump(
            by_alias=True, exclude_none=True
        )
    except ValidationError as exc:
        details.extend(_details(exc, "options"))
        options = {}
    if not details:
        details.extend(cls.validate_batch(options, request.jobs))
    deadline = request.deadline_seconds or caps.default_deadline_seconds
    if deadline > caps.max_deadline_seconds:
        details.append(
            {
                "field": "deadlineSeconds",
                "message": f"at most {caps.max_deadline_seconds} seconds for {caps.name}",
            }
        )
    if details:
        details = details[:MAX_ERRORS_REPORTED]
        raise RequestError(
            422, "VALIDATION_FAILED", "; ".join(f"{d['field']}: {d['message']}" for d in details), details
        )
    return cls, options, deadline


def create_batch(
    body: str | None,
    idempotency_key: str | None,
    base_path: str,
    *,
    is_base64: bool = False,
    api_base_url: str | None = None,
    store: Store | None = None,
) -> tuple[int, dict[str, Any]]:
    request = parse_create(body, is_base64=is_base64)
    cls, options, deadline = validate_for_provider(request)
    try:
        connection = load_connection(request.connection)
    except BatchBridgeError as exc:
        raise RequestError(
            422, exc.code, exc.message, [{"field": "connection", "message": exc.message}]
        ) from None
    if connection.provider != request.provider:
        message = (
            f"connection {request.connection!r} is for provider {connection.provider!r}, "
            f"not {request.provider!r}"
        )
        raise RequestError(
            422, "CONNECTION_PROVIDER_MISMATCH", message, [{"field": "connection", "message": message}]
        )

    store = store or Store()
    batch_id = str(uuid.uuid4())
    if idempotency_key is not None:
        if not IDEMPOTENCY_KEY.match(idempotency_key):
            raise RequestError(
                400, "INVALID_IDEMPOTENCY_KEY", "Idempotency-Key must be 1-128 letters, digits or _.:-"
            )
        body_hash = hashlib.sha256(request.model_dump_json(by_alias=True).encode()).hexdigest()
        existing = store.claim_idempotency_key(idempotency_key, body_hash, batch_id)
        if existing is not None:
            return _replay(store, existing, body_hash, base_path)

    created = now_iso()
    record = {
        "batchId": batch_id,
        "status": BatchStatus.ACCEPTED.value,
        "provider": request.provider,
        "connection": request.connection,
        "jobCount": len(request.jobs),
        "chunkCount": -(-len(request.jobs) // cls.capabilities.max_jobs_per_submit),
        "options": options,
        "clientReference": request.client_reference,
        "createdAt": created,
        "updatedAt": created,
        "deadlineAt": int(time.time()) + deadline,
        "requestKey": request_key(batch_id),
        "pollCount": 0,
        "apiBaseUrl": api_base_url,
    }
    written: list[str] = []
    try:
        store.put_json(
            request_key(batch_id),
            {
                "provider": request.provider,
                "connection": request.connection,
                "jobs": request.jobs,
                "options": options,
            },
        )
        written.append("request")
        store.create_batch({k: v for k, v in record.items() if v is not None})
        written.append("batch")
        aws.client("stepfunctions").start_execution(
            stateMachineArn=get_settings().state_machine_arn,
            name=batch_id,
            input=json.dumps({"batchId": batch_id, "error": None, "cancel": False}),
        )
    except Exception:
        logger.exception("could not accept the batch; undoing what was written", extra={"written": written})
        _undo(store, batch_id, written, idempotency_key)
        raise
    logger.info("batch accepted", extra={"batch_id": batch_id, "jobs": len(request.jobs)})
    return 202, _accepted(batch_id, base_path)


def _replay(
    store: Store, existing: dict[str, Any], body_hash: str, base_path: str
) -> tuple[int, dict[str, Any]]:
    """A key seen before: the same body gets the same batch; a different body is refused."""
    if existing.get("bodyHash") is None:  # the first request gave the key back (it failed) a moment ago
        raise RequestError(
            409, "IDEMPOTENCY_KEY_IN_USE", "a request with this Idempotency-Key just failed; retry"
        )
    if existing["bodyHash"] != body_hash:
        raise IdempotencyConflictError(
            "this Idempotency-Key was used for a different request body; use a new key for a new batch"
        )
    try:
        store.get_batch(existing["batchId"])
    except BatchBridgeError:
        # The first request with this key is still being accepted (or is being undone): never hand out an
        # id that may not come to exist.
        raise RequestError(
            409,
            "IDEMPOTENCY_KEY_IN_USE",
            "a request with this Idempotency-Key is still being accepted; retry",
        ) from None
    return 200, _accepted(existing["batchId"], base_path, replay=True)


def _undo(store: Store, batch_id: str, written: list[str], idempotency_key: str | None) -> None:
    try:
        if "batch" in written:
            store.delete_batch(batch_id)
        if "request" in written:
            store.delete_object(request_key(batch_id))
        if idempotency_key is not None:
            store.release_idempotency_key(idempotency_key)
    except ClientError:
        logger.exception("undo failed", extra={"batch_id": batch_id})


def _links(batch_id: str, base_path: str) -> dict[str, str]:
    return {
        "self": f"{base_path}/batches/{batch_id}",
        "results": f"{base_path}/batches/{batch_id}/results",
        "cancel": f"{base_path}/batches/{batch_id}/cancel",
    }


def _accepted(batch_id: str, base_path: str, *, replay: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "batchId": batch_id,
        "status": BatchStatus.ACCEPTED.value,
        "links": _links(batch_id, base_path),
    }
    if replay:
        body["replayed"] = True
    return body


def batch_view(batch_id: str, base_path: str, store: Store | None = None) -> dict[str, Any]:
    store = store or Store()
    batch = store.get_batch(batch_id)
    view = {
        "batchId": batch["batchId"],
        "status": batch["status"],
        "provider": batch["provider"],
        "connection": batch["connection"],
        "clientReference": batch.get("clientReference"),
        "jobCount": batch["jobCount"],
        "chunkCount": batch["chunkCount"],
        "progress": batch.get("progress"),
        "counts": batch.get("counts"),
        "error": batch.get("error"),
        "polls": batch.get("pollCount", 0),
        "estimatedCostUsd": batch.get("estimatedCostUsd"),
        "createdAt": batch["createdAt"],
        "updatedAt": batch.get("updatedAt"),
        "finishedAt": batch.get("finishedAt"),
        "deadlineAt": batch["deadlineAt"],
        "links": _links(batch_id, base_path),
    }
    if batch.get("resultsKey"):
        view["results"] = {"bucket": store.bucket, "key": batch["resultsKey"]}
    return {k: v for k, v in view.items() if v is not None}


def outcomes_page(batch_id: str, params: dict[str, str], store: Store | None = None) -> dict[str, Any]:
    store = store or Store()
    batch = store.get_batch(batch_id)
    _only_params(params, {"limit", "nextToken", "outcome", "format"})
    if params.get("format") == "file":
        if not batch.get("resultsKey"):
            raise RequestError(
                409,
                "RESULTS_NOT_READY",
                f"batch {batch_id} is {batch['status']}; its results file is written when it finishes",
            )
        url = store.presigned_url(results_key(batch_id), get_settings().results_url_seconds)
        return {
            "batchId": batch_id,
            "format": "jsonl",
            "url": url,
            "expiresIn": get_settings().results_url_seconds,
        }
    if params.get("format") not in (None, "json"):
        raise RequestError(400, "INVALID_PARAMETER", "format must be 'json' or 'file'")
    limit = _limit(params, default=100, maximum=1000)
    outcome = _choice(params, "outcome", OutcomeKind)
    try:
        items, token = store.query_outcomes(
            batch_id, limit=limit, next_token=params.get("nextToken"), outcome=outcome
        )
    except BatchBridgeError as exc:
        raise RequestError(400, exc.code, exc.message) from None
    page: dict[str, Any] = {"batchId": batch_id, "status": batch["status"], "items": items}
    if token:
        page["nextToken"] = token
    return page


def list_batches(params: dict[str, str], base_path: str, store: Store | None = None) -> dict[str, Any]:
    """``GET /batches``: batch summaries, newest first, optionally of one status and/or one provider."""
    _only_params(params, {"status", "provider", "limit", "nextToken"})
    limit = _limit(params, default=25, maximum=100)
    status = _choice(params, "status", BatchStatus)
    provider = params.get("provider") or None
    if provider is not None:
        known = [c.name for c in all_capabilities()]
        if provider not in known:
            raise RequestError(400, "INVALID_PARAMETER", f"provider must be one of: {', '.join(known)}")
    store = store or Store()
    try:
        items, token = store.list_batches(
            limit=limit, status=status, provider=provider, next_token=params.get("nextToken")
        )
    except BatchBridgeError as exc:
        raise RequestError(400, exc.code, exc.message) from None
    page: dict[str, Any] = {"items": [_summary(item, base_path) for item in items]}
    if token:
        page["nextToken"] = token
    return page


def _summary(item: dict[str, Any], base_path: str) -> dict[str, Any]:
    summary = {
        "batchId": item["batchId"],
        "status": item["status"],
        "provider": item["provider"],
        "connection": item["connection"],
        "clientReference": item.get("clientReference"),
        "jobCount": item["jobCount"],
        "counts": item.get("counts"),
        "createdAt": item["createdAt"],
        "finishedAt": item.get("finishedAt"),
        "links": _links(item["batchId"], base_path),
    }
    return {k: v for k, v in summary.items() if v is not None}


def _only_params(params: dict[str, str], allowed: set[str]) -> None:
    unknown = set(params) - allowed
    if unknown:
        raise RequestError(
            400, "UNKNOWN_PARAMETER", f"unknown query parameter(s): {', '.join(sorted(unknown))}"
        )


def _choice[E: StrEnum](params: dict[str, str], name: str, enum: type[E]) -> E | None:
    """The query parameter ``name`` as a member of ``enum``; None when absent or empty."""
    if not params.get(name):
        return None
    try:
        return enum(params[name])
    except ValueError:
        allowed = ", ".join(member.value for member in enum)
        raise RequestError(400, "INVALID_PARAMETER", f"{name} must be one of: {allowed}") from None


def _limit(params: dict[str, str], *, default: int, maximum: int) -> int:
    message = f"limit must be an integer from 1 to {maximum}"
    try:
        limit = int(params.get("limit", str(default)))
    except ValueError:
        raise RequestError(400, "INVALID_PARAMETER", message) from None
    if not 1 <= limit <= maximum:
        raise RequestError(400, "INVALID_PARAMETER", message)
    return limit


def cancel_batch(batch_id: str, base_path: str, store: Store | None = None) -> dict[str, Any]:
    """Stop the batch's workflow and start the short cancel run that collects, finalizes and publishes.

    Jobs that already finished keep their real outcomes; running work is cancelled at the provider where
    the provider can, and every unfinished job gets a ``not_processed`` outcome.
    """
    store = store or Store()
    batch = store.get_batch(batch_id)
    if BatchStatus(batch["status"]).is_terminal:
        raise RequestError(
            409, "BATCH_FINISHED", f"batch {batch_id} already finished with status {batch['status']}"
        )
    try:
        store.update_batch(batch_id, set_={"cancelRequested": True}, only_if_not_terminal=True)
    except BatchBridgeError:
        raise RequestError(
            409, "BATCH_FINISHED", f"batch {batch_id} finished before it could be cancelled"
        ) from None
    sfn = aws.client("stepfunctions")
    machine = get_settings().state_machine_arn
    execution = machine.replace(":stateMachine:", ":execution:") + f":{batch_id}"
    try:
        sfn.stop_execution(executionArn=execution, cause="cancelled through POST /batches/{id}/cancel")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("ExecutionDoesNotExist",):
            raise
    try:
        sfn.start_execution(
            stateMachineArn=machine,
            name=f"{batch_id}-cancel",
            input=json.dumps({"batchId": batch_id, "error": None, "cancel": True}),
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ExecutionAlreadyExists":
            raise
    logger.info("batch cancel requested", extra={"batch_id": batch_id})
    return {"batchId": batch_id, "status": "CANCELLING", "links": _links(batch_id, base_path)}


def receive_callback(
    batch_id: str, token: str, body: str | None, store: Store | None = None
) -> dict[str, Any]:
    """A provider's completion callback, authenticated by the batch's unguessable token.

    The body is never trusted on its own: when it names a chunk, the provider is asked to confirm it
    (iVvy: through ``results``); then the waiting workflow is resumed, and its next status check records
    what the provider says. Duplicate, late and unconfirmed callbacks are answered and otherwise ignored.
    """
    from batchbridge.engine import _chunk_info, _provider_for, wake_for_callback
    from batchbridge.models import ChunkState

    store = store or Store()
    unknown = RequestError(404, "UNKNOWN_CALLBACK", "no such callback")
    try:
        batch = store.get_batch(batch_id)
    except BatchBridgeError:
        raise unknown from None
    expected = str(batch.get("callbackToken") or "")
    if not expected or not hmac.compare_digest(expected.encode(), token.encode()):
        raise unknown
    if BatchStatus(batch["status"]).is_terminal:
        return {"accepted": False, "reason": "the batch has finished"}
    try:
        parsed: Any = json.loads(body) if body else None
    except json.JSONDecodeError:
        parsed = None
    provider = _provider_for(batch)
    ref = provider.callback_ref(parsed)
    if ref is not None:
        chunk = next(
            (
                c
                for c in store.list_chunks(batch_id)
                if c.get("providerRef") == ref and c["state"] == ChunkState.RUNNING
            ),
            None,
        )
        if chunk is None:
            return {"accepted": False, "reason": "no running chunk has that reference"}
        if not provider.confirm_callback(_chunk_info(batch, chunk), parsed):
            return {"accepted": False, "reason": "the provider does not confirm it"}
    resumed = wake_for_callback(batch_id, store)
    logger.info("callback received", extra={"batch_id": batch_id, "resumed": resumed})
    return {"accepted": True}


def providers_view() -> dict[str, Any]:
    return {"providers": [c.model_dump(by_alias=True) for c in all_capabilities()]}
