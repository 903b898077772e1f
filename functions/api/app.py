"""HTTP API: POST /batches, GET /batches/{id}, GET /batches/{id}/results, POST /batches/{id}/cancel,
GET /providers."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from batchbridge import api
from batchbridge.errors import BatchBridgeError, BatchNotFoundError, IdempotencyConflictError
from batchbridge.observability import logger, metrics, tracer

app = APIGatewayRestResolver()


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


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
    status, body = api.create_batch(
        event.body, key, _base_path(), is_base64=event.is_base64_encoded, api_base_url=_public_url()
    )
    metrics.add_metric(name="BatchesAccepted", unit="Count", value=1 if status == 202 else 0)
    return _json(status, body)


@app.get("/batches/<batch_id>")
def get_batch(batch_id: str) -> Response:
    return _json(200, api.batch_view(batch_id, _base_path()))


@app.get("/batches/<batch_id>/results")
def get_results(batch_id: str) -> Response:
    return _json(200, api.outcomes_page(batch_id, dict(app.current_event.query_string_parameters or {})))


@app.post("/batches/<batch_id>/cancel")
def cancel_batch(batch_id: str) -> Response:
    return _json(202, api.cancel_batch(batch_id, _base_path()))


@app.post("/callbacks/<batch_id>/<token>")
def provider_callback(batch_id: str, token: str) -> Response:
    # No IAM here: the vendor calls this route, and the unguessable token is its credential.
    return _json(200, api.receive_callback(batch_id, token, app.current_event.body))


@app.get("/providers")
def get_providers() -> Response:
    return _json(200, api.providers_view())


@app.exception_handler(api.RequestError)
def request_error(exc: api.RequestError) -> Response:
    return _json(exc.status, exc.body())


@app.exception_handler(BatchNotFoundError)
def not_found(exc: BatchNotFoundError) -> Response:
    return _json(404, {"error": {"code": exc.code, "message": exc.message}})


@app.exception_handler(IdempotencyConflictError)
def conflict(exc: IdempotencyConflictError) -> Response:
    return _json(422, {"error": {"code": exc.code, "message": exc.message}})


@app.exception_handler(BatchBridgeError)
def domain_error(exc: BatchBridgeError) -> Response:
    return _json(409, {"error": {"code": exc.code, "message": exc.message}})


@app.not_found
def no_route(_: Exception) -> Response:
    return _json(404, {"error": {"code": "NO_SUCH_ROUTE", "message": "no such route"}})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
