"""HTTP API: POST /batches, GET /batches, GET /batches/{id}, GET /batches/{id}/results,
POST /batches/{id}/cancel, POST /callbacks/{id}/{token} (the provider's), GET /providers,
POST /uploads, POST /uploads/{id}/complete, GET /uploads/{id}."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.logging import correlation_paths

from batchbridge import api, cost, ops_metrics, uploads
from batchbridge.errors import BatchBridgeError, BatchNotFoundError, IdempotencyConflictError
from batchbridge.observability import logger, metrics, tracer

if TYPE_CHECKING:  # an annotation only: nothing to import at cold start
    from aws_lambda_powertools.utilities.typing import LambdaContext

# A callback only has to name its chunk (the provider is then asked to confirm it); iVvy's embeds the
# chunk's results, so the cap is generous. The create route has its own limit (MAX_BODY_BYTES).
CALLBACK_MAX_BYTES = 1024 * 1024


def _serialize(body: Any) -> str:
    """Compact JSON in which ``<``, ``>`` and ``&`` are escaped, so that no input echoed in an error can
    ever be read as markup, whatever a client makes of the response."""
    text = json.dumps(body, separators=(",", ":"), default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


# debug=False always: a traceback never goes back to the caller, whatever POWERTOOLS_DEV says.
app = APIGatewayRestResolver(serializer=_serialize, debug=False)

_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(
        status_code=status, content_type=content_types.APPLICATION_JSON, body=body, headers=dict(_HEADERS)
    )


def _base_path() -> str:
    ctx = app.current_event.request_context
    stage = ctx.stage if ctx and ctx.stage else ""
    return f"/{stage}" if stage and stage != "$default" else ""


def _public_url() -> str | None:
    """This API's own public URL, for provider callbacks (``CALLBACK_BASE_URL`` overrides it)."""
    ctx = app.current_event.request_context
    domain = ctx.domain_name if ctx else None
    return f"https://{domain}{_base_path()}" if domain else None


@app.post("/batches")
def create_batch() -> Response:
    event = app.current_event
    key = (event.headers or {}).get("Idempotency-Key") or (event.headers or {}).get("idempotency-key")
    with cost.metering() as meter:  # what creating it cost is the batch's first usage
        meter.memory_mb = int(getattr(app.lambda_context, "memory_limit_in_mb", 128))
        status, body = api.create_batch(
            event.body, key, _base_path(), is_base64=event.is_base64_encoded, api_base_url=_public_url()
        )
    ops_metrics.batch_accepted(status, body)  # BatchesAccepted by provider, for a new batch only
    return _json(status, body)


@app.get("/batches")
def list_batches() -> Response:
    return _json(200, api.list_batches(dict(app.current_event.query_string_parameters or {}), _base_path()))


@app.get("/batches/<batch_id>")
def get_batch(batch_id: str) -> Response:
    return _json(200, api.batch_view(batch_id, _base_path()))


@app.get("/batches/<batch_id>/results")
def get_results(batch_id: str) -> Response:
    return _json(200, api.outcomes_page(batch_id, dict(app.current_event.query_string_parameters or {})))


@app.post("/batches/<batch_id>/retry")
def retry_batch(batch_id: str) -> Response:
    event = app.current_event
    key = (event.headers or {}).get("Idempotency-Key") or (event.headers or {}).get("idempotency-key")
    with cost.metering() as meter:
        meter.memory_mb = int(getattr(app.lambda_context, "memory_limit_in_mb", 128))
        status, body = api.retry_batch(
            batch_id,
            dict(event.query_string_parameters or {}),
            event.body,
            key,
            _base_path(),
            is_base64=event.is_base64_encoded,
            api_base_url=_public_url(),
        )
    ops_metrics.batch_accepted(status, body)  # a retry is a new batch: BatchesAccepted by provider
    return _json(status, body)


@app.post("/batches/<batch_id>/cancel")
def cancel_batch(batch_id: str) -> Response:
    return _json(202, api.cancel_batch(batch_id, _base_path()))


@app.post("/callbacks/<batch_id>/<token>")
def provider_callback(batch_id: str, token: str) -> Response:
    # No IAM here: the vendor calls this route, and the unguessable token is its credential.
    body = app.current_event.body
    if body is not None and len(body.encode()) > CALLBACK_MAX_BYTES:
        return _json(413, {"error": {"code": "BODY_TOO_LARGE", "message": "the callback body is too large"}})
    try:
        return _json(200, api.receive_callback(batch_id, token, body))
    except BatchNotFoundError:
        return _json(404, {"error": {"code": "UNKNOWN_CALLBACK", "message": "no such callback"}})
    except BatchBridgeError as exc:
        # The vendor cannot act on our troubles (a connection that cannot be read, a provider that cannot
        # confirm): it is told the callback was not taken, and the workflow's next poll does the work.
        logger.warning("callback not taken", extra={"code": exc.code})
        return _json(200, {"accepted": False, "reason": "the callback could not be confirmed now"})


@app.get("/providers")
def get_providers() -> Response:
    return _json(200, api.providers_view())


@app.post("/uploads")
def create_upload() -> Response:
    event = app.current_event
    return _json(*uploads.create_upload(event.body, is_base64=event.is_base64_encoded))


@app.post("/uploads/<upload_id>/complete")
def complete_upload(upload_id: str) -> Response:
    event = app.current_event
    return _json(*uploads.complete_upload(upload_id, event.body, is_base64=event.is_base64_encoded))


@app.get("/uploads/<upload_id>")
def get_upload(upload_id: str) -> Response:
    return _json(200, uploads.upload_view(upload_id))


@app.exception_handler(api.RequestError)
def request_error(exc: api.RequestError) -> Response:
    return _json(exc.status, exc.body())


@app.exception_handler(BatchNotFoundError)
def not_found(exc: BatchNotFoundError) -> Response:
    # A fixed message: the id came from the path, unvalidated, and the caller knows what it asked for.
    return _json(404, {"error": {"code": exc.code, "message": "no batch has that id"}})


@app.exception_handler(IdempotencyConflictError)
def conflict(exc: IdempotencyConflictError) -> Response:
    return _json(422, {"error": {"code": exc.code, "message": exc.message}})


@app.exception_handler(BatchBridgeError)
def domain_error(exc: BatchBridgeError) -> Response:
    return _json(409, {"error": {"code": exc.code, "message": exc.message}})


@app.not_found
def no_route(_: Exception) -> Response:
    return _json(404, {"error": {"code": "NO_SUCH_ROUTE", "message": "no such route"}})


@app.exception_handler(Exception)
def unexpected(exc: Exception) -> Response:
    # Logged in full here; the caller gets a fixed message and the request id to quote, nothing more.
    logger.exception("unhandled error in the API")
    ctx = app.current_event.request_context
    message = f"internal error; quote request id {ctx.request_id}" if ctx else "internal error"
    return _json(500, {"error": {"code": "INTERNAL_ERROR", "message": message}})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
