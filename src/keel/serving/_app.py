"""The REST endpoint: FastAPI over a model package loaded from the registry."""

from __future__ import annotations

import logging
import math
import os
import uuid
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from keel.data import records_to_frame
from keel.estimators import decides_itself
from keel.evaluation import decide
from keel.registry import LoadedPackage, load_package

MAX_INSTANCES = 10_000
MAX_BODY_BYTES = 10 * 1024 * 1024
MODEL_URI_ENV = "KEEL_SERVE_MODEL"
TRACKING_URI_ENV = "KEEL_SERVE_TRACKING_URI"

logger = logging.getLogger("keel.serving")


class PredictRequest(BaseModel):
    """``{"instances": [{feature: value, ...}, ...]}``."""

    model_config = ConfigDict(extra="forbid")
    instances: list[Any] = Field(min_length=1, max_length=MAX_INSTANCES)


def _error(status: int, message: str, request: Request, detail: Any = None) -> JSONResponse:
    return _error_response(status, message, request.state.request_id, detail)


def _error_response(status: int, message: str, request_id: str, detail: Any = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message, "request_id": request_id}
    if detail is not None:
        body["detail"] = detail
    return JSONResponse(body, status_code=status)


class _RequestContext:
    """ASGI middleware: a request id on every request and answer, and a body-size cap.

    The cap is checked on ``Content-Length`` before anything is read and, for
    chunked bodies, while the body is read.
    """

    def __init__(self, app: Any, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        length = dict(scope.get("headers", ())).get(b"content-length")
        if length is not None:
            if not length.isdigit():
                await _error_response(400, "invalid Content-Length header", request_id)(
                    scope, receive, send
                )
                return
            if int(length) > self.max_body_bytes:
                await self._too_large(int(length), request_id, scope, receive, send)
                return

        # A body without Content-Length (chunked) is counted as it arrives; past the
        # cap, the 413 is sent at once and whatever the app answers later is dropped.
        received = 0
        answered = False

        async def counted_receive() -> Any:
            nonlocal received, answered
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes and not answered:
                    await self._too_large(received, request_id, scope, receive, send)
                    answered = True
                    return {"type": "http.disconnect"}
            return message

        async def send_with_id(message: Any) -> None:
            if answered:
                return
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        await self.app(scope, counted_receive, send_with_id)

    async def _too_large(
        self, size: int, request_id: str, scope: Any, receive: Any, send: Any
    ) -> None:
        await _error_response(
            413,
            f"request body of {size} bytes (or more) is over the limit of"
            f" {self.max_body_bytes}; send fewer instances per request",
            request_id,
        )(scope, receive, send)


def create_app(package: LoadedPackage, max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """Build the app serving ``package``.

    Routes: ``GET /health``, ``POST /predict``. Bad input gets a 4xx naming the row
    and field; an unexpected failure gets a 500 with only a request id (details go to
    the server log, never to the client).
    """
    app = FastAPI(
        title=f"Keel — {package.name}",
        version=package.version,
        description=f"Model {package.name} version {package.version} ({package.task}).",
    )
    app.add_middleware(_RequestContext, max_body_bytes=max_body_bytes)
    schema = package.schema
    model_info = {"name": package.name, "version": package.version, "alias": package.alias}
    classification = package.task != "regression"
    classes = [str(c) for c in getattr(package.model, "classes_", [])]
    positive = package.metadata.get("positive_class")
    threshold = package.metadata.get("decision_threshold")
    if package.task != "binary" or positive not in classes:
        threshold = None
    # a fairness-mitigated model decides per row itself (keel.estimators) and may need
    # the sensitive features to do it: rows without them are refused
    own_decisions = decides_itself(package.model)
    required = list(package.metadata.get("requires_sensitive_features") or [])

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = []
        for e in exc.errors()[:20]:
            loc, msg = list(e.get("loc", ())), e.get("msg", "")
            if e.get("type") == "json_invalid":
                position = loc[1] if len(loc) > 1 else "?"
                loc, msg = ["body"], f"not valid JSON (at character {position})"
            detail.append({"loc": loc, "msg": msg})
        first = detail[0] if detail else {"loc": [], "msg": "invalid request"}
        where = (
            "".join(
                f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"] if p != "body"
            ).lstrip(".")
            or "body"
        )
        return _error(422, f"{where}: {first['msg']}", request, detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), request)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        logger.error(
            "request %s failed: %s", request.state.request_id, type(exc).__name__, exc_info=exc
        )
        return _error(500, "internal error; quote the request_id to the operator", request)

    @app.get("/health")
    def health() -> dict[str, Any]:
        """Liveness and the model being served."""
        return {"status": "ok", "model": model_info, "task": package.task}

    @app.post("/predict")
    def predict(body: PredictRequest, request: Request) -> Any:
        """Predict for each instance; classification answers carry class probabilities."""
        frame, errors = records_to_frame(body.instances, schema, required=required)
        if errors:
            first = errors[0]
            where = f"instances[{first.row}]" + (f".{first.field}" if first.field else "")
            return _error(422, f"{where}: {first.message}", request, [e.to_dict() for e in errors])
        answer: dict[str, Any] = {}
        if classification and hasattr(package.model, "predict_proba"):
            # One pass through the pipeline. Binary models decide at the threshold
            # chosen on validation (the one the test metrics were computed at);
            # otherwise the most probable class, what the model's predict() returns.
            proba = package.model.predict_proba(frame)
            if own_decisions:
                answer["predictions"] = _plain_list(np.asarray(package.model.predict(frame)))
            elif threshold is not None:
                answer["predictions"] = decide(proba, classes, positive, threshold).tolist()
                answer["decision_threshold"] = threshold
            else:
                labels = package.model.classes_
                answer["predictions"] = _plain_list(labels[proba.argmax(axis=1)])
            answer["probabilities"] = [
                dict(zip(classes, row, strict=True)) for row in np.round(proba, 6).tolist()
            ]
        else:
            answer["predictions"] = _plain_list(package.model.predict(frame))
        answer["model"] = model_info
        answer["request_id"] = request.state.request_id
        return answer

    return app


def _plain_list(values: Any) -> list[Any]:
    out = []
    for value in values.tolist():
        if isinstance(value, float) and not math.isfinite(value):
            out.append(None)
        else:
            out.append(value)
    return out


def create_app_from_env() -> FastAPI:
    """App factory for ``uvicorn --factory`` (one per worker process).

    Reads the model URI and tracking URI that ``keel serve`` put in the environment.
    """
    package = load_package(os.environ[MODEL_URI_ENV], os.environ[TRACKING_URI_ENV])
    return create_app(package)
