"""The Open Inference Protocol v2 routes (KServe, Triton clients)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from keel.families.tabular.serving.state import TabularState
from keel.families.tabular.serving.v2 import (
    V2Request,
    model_metadata,
    outputs_of,
    request_schema,
    server_metadata,
    tensors_to_records,
)
from keel.serving._http import error_answer


def v2_routes(state: TabularState) -> APIRouter:
    """``/v2``, health, model metadata and readiness, ``infer``."""
    router = APIRouter()
    need = state.need

    @router.get("/v2")
    def v2_server() -> dict[str, Any]:
        """v2 server metadata."""
        return server_metadata()

    @router.get("/v2/health/live")
    def v2_live() -> dict[str, Any]:
        """v2 liveness (no key needed)."""
        return {"live": True}

    @router.get("/v2/health/ready")
    def v2_ready() -> dict[str, Any]:
        """v2 readiness (no key needed): the model answered its own example rows."""
        return {"ready": state.app.state.served.check_ready()[0]}

    @router.get("/v2/models/{name}", dependencies=need("predict"))
    @router.get("/v2/models/{name}/versions/{version}", dependencies=need("predict"))
    def v2_metadata(name: str, version: str | None = None) -> dict[str, Any]:
        """v2 model metadata: input and output tensors."""
        return model_metadata(_served(state, name, version))

    @router.get("/v2/models/{name}/ready", dependencies=need("predict"))
    @router.get("/v2/models/{name}/versions/{version}/ready", dependencies=need("predict"))
    def v2_model_ready(name: str, version: str | None = None) -> dict[str, Any]:
        """v2 model readiness."""
        served = _served(state, name, version)
        return {"name": served.info["name"], "ready": served.check_ready()[0]}

    v2_body = {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": request_schema()}},
        }
    }

    @router.post("/v2/models/{name}/infer", dependencies=need("predict"), openapi_extra=v2_body)
    @router.post(
        "/v2/models/{name}/versions/{version}/infer",
        dependencies=need("predict"),
        openapi_extra=v2_body,
    )
    async def v2_infer(name: str, request: Request, version: str | None = None) -> Any:
        """v2 inference: one tensor per feature in, predictions and probabilities out.

        The body is JSON whatever its Content-Type says (v2 clients often send none).
        """
        return _infer(state, name, version, request, await request.body())

    return router


def _served(state: TabularState, name: str, version: str | None = None) -> Any:
    served = state.app.state.served
    if name != served.info["name"]:
        raise StarletteHTTPException(
            404,
            f"model {name[:100]!r} is not served here; this server serves {served.info['name']!r}",
        )
    if version is not None and version != served.version:
        raise StarletteHTTPException(
            404, f"{name} version {version[:20]!r} is not served; version {served.version} is"
        )
    return served


def _infer(state: TabularState, name: str, version: str | None, request: Request, raw: bytes):
    if request.headers.get("inference-header-content-length"):
        return error_answer(
            400,
            "the binary tensor data extension is not supported: send JSON tensors"
            " (tritonclient: binary_data=False)",
            request,
        )
    _served(state, name, version)
    try:
        body = V2Request.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        return error_answer(422, f"{where}: {first.get('msg', 'invalid')}", request)
    records, problem = tensors_to_records(body)
    if problem:
        return error_answer(422, problem, request)
    answer, served = state.answer_rows(records, request, "rows")  # inline, as /predict
    if served is None:
        return answer
    return {
        "model_name": served.info["name"],
        "model_version": served.version,
        "id": body.id or answer["request_id"],
        "parameters": {"request_id": answer["request_id"]},
        "outputs": outputs_of(answer, served, body.outputs),
    }
