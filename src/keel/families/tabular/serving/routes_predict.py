"""Routes that answer: ``/predict``, ``/explain`` and ``/feedback``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from keel.families.tabular.serving.state import TabularState
from keel.serving._experiment import record_outcomes
from keel.serving._http import (
    ExplainRequest,
    FeedbackRequest,
    PredictRequest,
    dumps_answer,
    error_answer,
    logger,
    parse_body,
)


def _example(body: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI request example."""
    return {"requestBody": {"content": {"application/json": {"example": body}}}}


def predict_routes(state: TabularState, example_rows: list[Any]) -> APIRouter:
    """``POST /predict``, ``/explain``, ``/feedback``; examples from the package's rows."""
    router = APIRouter()
    predict_body: dict[str, Any] = {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": PredictRequest.model_json_schema(),
                    **({"example": {"instances": example_rows}} if example_rows else {}),
                }
            },
        }
    }

    @router.post("/predict", dependencies=state.need("predict"), openapi_extra=predict_body)
    async def predict(request: Request) -> Any:
        """Predict for each instance; classification answers carry class probabilities."""
        # The body is parsed and checked in one pass by pydantic-core, and the answer
        # computed on the event loop: a prediction takes well under a millisecond, less
        # than the thread hop FastAPI would add for a sync endpoint; the GIL would
        # serialise the work in threads anyway.
        body = parse_body(PredictRequest, await request.body())
        answer = state.answer_rows(body.instances, request, unit=body.unit, opt_out=body.opt_out)[0]
        if isinstance(answer, dict):
            return Response(dumps_answer(answer), media_type="application/json")
        return answer

    @router.post(
        "/explain",
        dependencies=state.need("predict"),
        openapi_extra=_example({"instances": example_rows[:1]}) if example_rows else None,
    )
    def explain(body: ExplainRequest, request: Request) -> Any:
        """Local explanations: each feature's contribution to each row's score (SHAP)."""
        return _explain(state, body, request)

    @router.post(
        "/feedback",
        dependencies=state.need("predict"),
        openapi_extra=_example(
            {"request_id": "5f0c3a9d2b7e4c1f8a6d0e2b9c4f7a13", "labels": [None]}
        ),
    )
    def feedback(body: FeedbackRequest, request: Request) -> Any:
        """Ground truth for an answered request: one label per row, in order."""
        return _feedback(state, body, request)

    return router


def _explain(state: TabularState, body: ExplainRequest, request: Request) -> Any:
    if state.explain_row is None:
        return error_answer(501, "explanations are not available on this server", request)
    served, settings = state.app.state.served, state.settings
    try:
        found, errors = served.explain(
            body.instances, state.explain_row, settings.extra_fields, settings.unseen_categories
        )
    except Exception as exc:
        logger.error(
            "request %s: explanation failed: %s",
            request.state.request_id,
            type(exc).__name__,
            exc_info=exc,
        )
        return error_answer(
            501, f"this model cannot be explained here ({type(exc).__name__})", request
        )
    if errors:
        first = errors[0]
        where = f"instances[{first.row}]" + (f".{first.field}" if first.field else "")
        return error_answer(
            422, f"{where}: {first.message}", request, [e.to_dict() for e in errors]
        )
    return {"explanations": found, "model": served.info, "request_id": request.state.request_id}


def _feedback(state: TabularState, body: FeedbackRequest, request: Request) -> Any:
    log = state.log
    if log is None:
        return error_answer(409, "the prediction log is off (serving.prediction_log)", request)
    if state.opted_out(request, body.opt_out):  # consent withheld: nothing is stored
        state.count_opt_out(state.app.state.served.info["name"])
        return {"status": "not stored (opt-out)"}
    found: dict[str, Any] = {"status": "recorded"}
    if body.labels is not None and body.request_id is not None:
        rows = log.has_request(body.request_id)
        if rows == 0:
            return error_answer(
                404, f"request_id {body.request_id[:64]!r}: no such prediction in the log", request
            )
        if len(body.labels) != rows:
            return error_answer(
                422,
                f"labels: {len(body.labels)} given; request {body.request_id} had {rows} row(s)",
                request,
            )
        found |= {"request_id": body.request_id, "rows": rows}
    if body.outcomes:
        refused = record_outcomes(log, body.outcomes, body.request_id, request)
        if refused is not None:
            return refused
        found["outcomes"] = len(body.outcomes)
    if body.labels is not None and body.request_id is not None:
        log.feedback(body.request_id, body.labels)  # after every check: all or nothing
    return found
