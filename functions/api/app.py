"""HTTP API: POST /batches, GET /batches, GET /batches/{id}, GET /batches/{id}/results,
POST /batches/{id}/cancel, POST /batches/{id}/retry, POST /callbacks/{id}/{token} (the provider's),
GET /providers, POST /uploads, POST /uploads/{id}/complete, GET /uploads/{id}, GET /openapi.json.

The routes, their parameter models and their answer models are the OpenAPI document: ``make openapi``
writes it to schemas/openapi.v1.json, and GET /openapi.json serves it."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Header, Query
from aws_lambda_powertools.logging import correlation_paths
from pydantic import BaseModel

from batchbridge import api, api_models, cost, ops_metrics, uploads
from batchbridge.errors import BatchBridgeError, BatchNotFoundError, IdempotencyConflictError
from batchbridge.observability import logger, metrics, tracer

if TYPE_CHECKING:  # annotations only: nothing to import at cold start
    from aws_lambda_powertools.utilities.typing import LambdaContext

# A callback only has to name its chunk (the provider is then asked to confirm it); iVvy's embeds the
# chunk's results, so the cap is generous. The create route has its own limit (MAX_BODY_BYTES).
CALLBACK_MAX_BYTES = 1024 * 1024


def _serialize(body: Any) -> str:
    """Compact JSON in which ``<``, ``>`` and ``&`` are escaped, so that no input echoed in an error can
    ever be read as markup, whatever a client makes of the response."""
    text = json.dumps(body, separators=(",", ":"), default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


# debug=False always: a traceback never goes back to the caller, whatever POWERTOOLS_DEV says. Validation
# checks path, query and header parameters against the routes' annotations; the answers are described by
# models in `responses` (the document), not re-validated on the way out.
app = APIGatewayRestResolver(serializer=_serialize, debug=False, enable_validation=True)

_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


def _json(status: int, body: dict[str, Any]) -> Response[Any]:
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


# --- what the document says about answers and bodies -------------------------------------------------

_ERRORS = {
    400: "The request is malformed (unreadable body, bad parameter, token from elsewhere).",
    404: "No such batch, upload, route or callback.",
    409: "Not in this state (already finished, results not ready, upload not ready or used, key in use).",
    413: "The body is over the limit.",
    422: "Readable but invalid; `details` names each field at fault.",
    500: "A defect; the message carries only the request id to quote.",
}


def _answers(ok: dict[int, tuple[str, Any]], *errors: int) -> dict[int, Any]:
    """The route's answers for the document: its successes, then its errors (all shaped as ErrorBody)."""
    out: dict[int, Any] = {
        status: {"description": text, "content": {content_types.APPLICATION_JSON: {"model": model}}}
        for status, (text, model) in ok.items()
    }
    for status in (*errors, 500):
        content = {content_types.APPLICATION_JSON: {"model": api_models.ErrorBody}}
        out[status] = {"description": _ERRORS[status], "content": content}
    return out


#: Bodies the routes read themselves (see _body), named here so that the document describes them.
_BODIES: dict[str, type[BaseModel] | Callable[[], type[BaseModel]]] = {}


def _body(
    name: str, model: type[BaseModel] | Callable[[], type[BaseModel]], *, required: bool = True
) -> dict[str, Any]:
    """The document's request body for a route that reads its body itself, rather than through
    Powertools' validation: POST /batches validates up to the inline limit of jobs in one pass over lines
    it writes as it checks them (api.inline_jobs), which parsing and validating the body first would
    double; and every body goes through api.read_json_object, which refuses what json.loads would let
    through or choke on (NaN, nesting deep enough to exhaust the stack) with a 400 instead of a 500.

    ``model`` may be a function that builds it: the document is built on demand, not at cold start."""
    _BODIES[name] = model
    schema = {"$ref": f"#/components/schemas/{name}"}
    content = {content_types.APPLICATION_JSON: {"schema": schema}}
    return {"requestBody": {"required": required, "content": content}}


_IDEMPOTENCY = (
    "Retries with the same key and body return the same batch (200, `replayed: true`); the same key with a "
    "different body is refused (422 IDEMPOTENCY_KEY_REUSED). Kept for 24 hours."
)
IdempotencyKey = Annotated[
    str | None,
    # Checked by api.create_batch / api.retry_batch (400 INVALID_IDEMPOTENCY_KEY); the pattern is documented.
    Header(
        alias="Idempotency-Key",
        description=_IDEMPOTENCY,
        json_schema_extra={"pattern": api.IDEMPOTENCY_KEY.pattern},
    ),
]


#: The query model of each operation that takes one, for the document's parameter schemas.
_QUERIES: dict[str, type[BaseModel]] = {}


def _takes_query(operation_id: str, model: type[BaseModel]) -> str:
    _QUERIES[operation_id] = model
    return operation_id


def _query[M: BaseModel](model: type[M], value: M) -> M:
    """The validated query model, once no parameter outside it was sent (Powertools reads only the
    model's fields, so an unknown one is refused here)."""
    names = {field.alias or name for name, field in model.model_fields.items()}
    api.only_params(dict(app.current_event.query_string_parameters or {}), names)
    return value


# --- routes -------------------------------------------------------------------------------------------


@app.post(
    "/batches",
    tags=["batches"],
    operation_id="createBatch",
    summary="Accept a batch and start its workflow.",
    responses=_answers(
        {
            202: ("Accepted; the workflow has started.", api_models.Accepted),
            200: (
                "A retry with the same Idempotency-Key and body; the batch it created before.",
                api_models.Accepted,
            ),
        },
        400,
        409,
        413,
        422,
    ),
    openapi_extensions=_body("CreateBatchRequest", api_models.create_batch_request),
)
def create_batch(idempotency_key: IdempotencyKey = None) -> Response[Any]:
    event = app.current_event
    return _accept(
        lambda: api.create_batch(
            event.body,
            idempotency_key,
            _base_path(),
            is_base64=event.is_base64_encoded,
            api_base_url=_public_url(),
        )
    )


def _accept(create: Callable[[], tuple[int, dict[str, Any]]]) -> Response[Any]:
    """A new batch (created or retried): what accepting it cost is its first usage, and BatchesAccepted
    counts it by provider (a replay is not counted)."""
    with cost.metering() as meter:
        meter.memory_mb = int(getattr(app.lambda_context, "memory_limit_in_mb", 128))
        status, body = create()
    ops_metrics.batch_accepted(status, body)
    return _json(status, body)


@app.get(
    "/batches",
    tags=["batches"],
    operation_id=_takes_query("listBatches", api_models.ListBatchesQuery),
    summary="Batch summaries, newest first.",
    responses=_answers({200: ("One page of batch summaries.", api_models.BatchList)}, 400),
)
def list_batches(query: Annotated[api_models.ListBatchesQuery, Query()]) -> Response[Any]:
    query = _query(api_models.ListBatchesQuery, query)
    return _json(200, api.list_batches(query, _base_path()))


@app.get(
    "/batches/<batch_id>",
    tags=["batches"],
    operation_id="getBatch",
    summary="A batch's status, progress, counts and links.",
    responses=_answers({200: ("The batch.", api_models.BatchView)}, 404),
)
def get_batch(batch_id: str) -> Response[Any]:
    return _json(200, api.batch_view(batch_id, _base_path()))


@app.get(
    "/batches/<batch_id>/results",
    tags=["batches"],
    operation_id=_takes_query("getResults", api_models.ResultsQuery),
    summary="The batch's outcomes, a page at a time, or a link to the whole JSON Lines file.",
    responses=_answers(
        {200: ("A page of outcomes, or the link to a results file.", api_models.Results)}, 400, 404, 409
    ),
)
def get_results(batch_id: str, query: Annotated[api_models.ResultsQuery, Query()]) -> Response[Any]:
    query = _query(api_models.ResultsQuery, query)
    return _json(200, api.outcomes_page(batch_id, query))


@app.post(
    "/batches/<batch_id>/retry",
    tags=["batches"],
    operation_id=_takes_query("retryBatch", api_models.RetryQuery),
    summary="A new batch of the jobs of a finished batch that ended failed or not processed.",
    description=(
        "The new batch holds exactly those jobs, as they were submitted and in their order, with the same "
        "provider, connection and options; the two are linked (`retryOf`, `retries`). An Idempotency-Key "
        "works as for POST /batches."
    ),
    responses=_answers(
        {
            202: ("Accepted; the retry batch's workflow has started.", api_models.Accepted),
            200: ("A replay of the same request with the same Idempotency-Key.", api_models.Accepted),
        },
        400,
        404,
        409,
        422,
    ),
    openapi_extensions=_body("RetryRequest", api.RetryRequest, required=False),
)
def retry_batch(
    batch_id: str,
    query: Annotated[api_models.RetryQuery, Query()],
    idempotency_key: IdempotencyKey = None,
) -> Response[Any]:
    event = app.current_event
    query = _query(api_models.RetryQuery, query)
    return _accept(
        lambda: api.retry_batch(
            batch_id,
            query,
            event.body,
            idempotency_key,
            _base_path(),
            is_base64=event.is_base64_encoded,
            api_base_url=_public_url(),
        )
    )


@app.post(
    "/batches/<batch_id>/cancel",
    tags=["batches"],
    operation_id="cancelBatch",
    summary="Stop the batch; it ends CANCELLED with an outcome for every job and a published event.",
    responses=_answers(
        {
            202: (
                "Cancelling; running work is cancelled at the provider where the provider can.",
                api_models.Cancelling,
            )
        },
        404,
        409,
    ),
)
def cancel_batch(batch_id: str) -> Response[Any]:
    return _json(202, api.cancel_batch(batch_id, _base_path()))


@app.post(
    "/callbacks/<batch_id>/<token>",
    tags=["callbacks"],
    operation_id="providerCallback",
    summary="A provider's completion callback (the URL BatchBridge gave the provider).",
    description=(
        "No IAM: the unguessable per-batch token in the path authenticates the caller. The body is never "
        "trusted on its own; the provider is asked to confirm what it names. Duplicates and late callbacks "
        "are answered 200 and otherwise ignored."
    ),
    responses=_answers({200: ("Received.", api_models.CallbackAnswer)}, 404, 413),
    # The one route without IAM (template.yaml: Auth NONE); an empty list is what says so in OpenAPI.
    openapi_extensions={
        "security": [],
        "requestBody": {"required": False, "content": {content_types.APPLICATION_JSON: {"schema": {}}}},
    },
)
def provider_callback(batch_id: str, token: str) -> Response[Any]:
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


@app.get(
    "/providers",
    tags=["providers"],
    operation_id="listProviders",
    summary="The providers and what each declares about itself.",
    responses=_answers({200: ("Every provider's capabilities.", api_models.ProviderList)}),
)
def get_providers() -> Response[Any]:
    return _json(200, api.providers_view())


@app.post(
    "/uploads",
    tags=["uploads"],
    operation_id="createUpload",
    summary="A pre-signed upload for a file of jobs (a single PUT, or multipart above 100 MiB).",
    responses=_answers(
        {201: ("The upload record and where to send the file.", api_models.UploadCreated)}, 400, 413, 422
    ),
    openapi_extensions=_body("CreateUploadRequest", uploads.CreateUploadRequest),
)
def create_upload() -> Response[Any]:
    event = app.current_event
    return _json(*uploads.create_upload(event.body, is_base64=event.is_base64_encoded))


@app.post(
    "/uploads/<upload_id>/complete",
    tags=["uploads"],
    operation_id="completeUpload",
    summary="The file is uploaded; validation starts (asynchronously). Completing again is harmless.",
    responses=_answers(
        {
            202: (
                "Validating (or, completed before, the upload's current status).",
                api_models.UploadCompleted,
            ),
            503: ("Validation could not be started; complete the upload again.", api_models.ErrorBody),
        },
        400,
        404,
        409,
        422,
    ),
    openapi_extensions=_body("CompleteUploadRequest", uploads.CompleteUploadRequest, required=False),
)
def complete_upload(upload_id: str) -> Response[Any]:
    event = app.current_event
    return _json(*uploads.complete_upload(upload_id, event.body, is_base64=event.is_base64_encoded))


@app.get(
    "/uploads/<upload_id>",
    tags=["uploads"],
    operation_id="getUpload",
    summary="Where the upload stands; when INVALID, the file's first problems with their line numbers.",
    responses=_answers({200: ("The upload.", api_models.UploadView)}, 404),
)
def get_upload(upload_id: str) -> Response[Any]:
    return _json(200, uploads.upload_view(upload_id))


@app.get(
    "/openapi.json",
    tags=["meta"],
    operation_id="getOpenApi",
    summary="This document (OpenAPI 3.1), generated from the routes and their models.",
    responses={
        200: {
            "description": "The OpenAPI document.",
            "content": {content_types.APPLICATION_JSON: {"schema": {"type": "object"}}},
        }
    },
)
def get_openapi() -> Response[Any]:
    return _json(200, openapi_document())


_DESCRIPTION = """Post a batch of jobs for a provider (iVvy, WillSuite, SuperOffice, OS1) through a named \
connection; a Step Functions workflow submits it in chunks, waits for the provider, and records exactly one \
outcome per job. When the batch ends, a CloudEvents completion event is published on SNS \
(schemas/completion-event.v1.json).

Every route but the provider callback is signed with AWS Signature Version 4 (IAM). Errors always have the \
shape of `ErrorBody`; no error echoes unvalidated input back as markup.

This document is generated from the api function's routes and models (`make openapi`); a test keeps \
schemas/openapi.v1.json equal to it, and another checks real answers against it."""


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI document, generated from the routes (their annotations and models)."""
    from pydantic.json_schema import models_json_schema

    app.configure_openapi(
        title="BatchBridge API",
        version="1",
        summary="Run SaaS vendors' asynchronous batch jobs to completion.",
        description=_DESCRIPTION,
        servers=[
            {
                "url": "https://{apiId}.execute-api.{region}.amazonaws.com/{stage}",
                "variables": {
                    "apiId": {"default": "abc123", "description": "The ApiUrl output of the stack names it."},
                    "region": {"default": "us-east-1"},
                    "stage": {"default": "v1"},
                },
            }
        ],
        security_schemes={
            "sigv4": {
                "type": "apiKey",
                "name": "Authorization",
                "in": "header",
                "description": (
                    "AWS Signature Version 4 for the execute-api service (API Gateway IAM authorization)."
                ),
            }
        },
        security=[{"sigv4": []}],
    )
    document: dict[str, Any] = json.loads(app.get_openapi_json_schema())
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    _, bodies = models_json_schema(
        [(model if isinstance(model, type) else model(), "validation") for model in _BODIES.values()],
        ref_template="#/components/schemas/{model}",
    )
    for name, schema in bodies.get("$defs", {}).items():
        schemas.setdefault(name, schema)
    for item in document["paths"].values():
        for operation in item.values():
            _full_query_schemas(operation, schemas)
            # Powertools' 422 for its own validation, where a route has no 422 of ours: a parameter it
            # refuses is answered 400 INVALID_PARAMETER (invalid_parameter, below), so there is no such 422.
            validation = (
                operation["responses"]
                .get("422", {})
                .get("content", {})
                .get(content_types.APPLICATION_JSON, {})
            )
            if validation.get("schema", {}).get("$ref", "").endswith("/HTTPValidationError"):
                del operation["responses"]["422"]
    # What no route refers to: Powertools' own validation-error shapes (every error here is an ErrorBody)
    # and the query models (their fields are listed as parameters).
    used = _referenced(document["paths"], schemas)
    document["components"]["schemas"] = {name: schemas[name] for name in sorted(used)}
    return document


def _full_query_schemas(operation: dict[str, Any], schemas: dict[str, Any]) -> None:
    """Powertools lists a query model's fields with their types only; each gets its field's whole schema
    (bounds, defaults, enums) from the model."""
    model = _QUERIES.get(operation.get("operationId", ""))
    if model is None:
        return
    properties = model.model_json_schema(ref_template="#/components/schemas/{model}")["properties"]
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "query" and parameter["name"] in properties:
            schema = dict(properties[parameter["name"]])
            if "description" in schema:
                parameter["description"] = schema.pop("description")
            schema.pop("title", None)
            parameter["schema"] = schema


def _referenced(root: Any, schemas: dict[str, Any]) -> set[str]:
    """The component schemas ``root`` refers to, directly or through each other."""
    found: set[str] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
                name = ref.rsplit("/", 1)[-1]
                if name not in found:
                    found.add(name)
                    stack.append(schemas[name])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


@app.exception_handler(api.RequestError)
def request_error(exc: api.RequestError) -> Response[Any]:
    return _json(exc.status, exc.body())


@app.exception_handler(RequestValidationError)
def invalid_parameter(exc: RequestValidationError) -> Response[Any]:
    """Powertools' validation of path, query and header parameters, answered as every other refusal: a
    400 INVALID_PARAMETER naming each parameter at fault (never the value: it was not valid)."""
    details = []
    for err in exc.errors()[: api.MAX_ERRORS_REPORTED]:
        # loc is (where, the route argument, the field...) for a model, (where, the parameter) otherwise
        where, *path = err["loc"]
        if len(path) > 1 and where in ("query", "header"):
            path = path[1:]
        field = ".".join(str(part) for part in path) or str(where)
        details.append({"field": field, "message": str(err.get("msg", "is not valid"))})
    message = "; ".join(f"{d['field']}: {d['message']}" for d in details) or "a parameter is not valid"
    return _json(400, {"error": {"code": "INVALID_PARAMETER", "message": message, "details": details}})


@app.exception_handler(BatchNotFoundError)
def not_found(exc: BatchNotFoundError) -> Response[Any]:
    # A fixed message: the id came from the path, unvalidated, and the caller knows what it asked for.
    return _json(404, {"error": {"code": exc.code, "message": "no batch has that id"}})


@app.exception_handler(IdempotencyConflictError)
def conflict(exc: IdempotencyConflictError) -> Response[Any]:
    return _json(422, {"error": {"code": exc.code, "message": exc.message}})


@app.exception_handler(BatchBridgeError)
def domain_error(exc: BatchBridgeError) -> Response[Any]:
    return _json(409, {"error": {"code": exc.code, "message": exc.message}})


@app.not_found
def no_route(_: Exception) -> Response[Any]:
    return _json(404, {"error": {"code": "NO_SUCH_ROUTE", "message": "no such route"}})


@app.exception_handler(Exception)
def unexpected(exc: Exception) -> Response[Any]:
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
