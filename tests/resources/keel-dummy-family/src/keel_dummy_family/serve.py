"""``POST /score``: the constant for every row; logged like every served answer."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field


class ScoreRequest(BaseModel):
    """Rows to score (their content does not matter to a constant)."""

    model_config = ConfigDict(extra="forbid")
    rows: list[dict[str, Any]] = Field(min_length=1, max_length=1000)


def self_test(loaded: Any) -> tuple[bool, str]:
    ok = isinstance(loaded.model, float)
    return ok, "the constant loaded" if ok else "no constant"


def describe(served: Any) -> dict[str, Any]:
    return {"value": served.loaded.model}


def routes(state: Any) -> APIRouter:
    router = APIRouter()

    @router.post("/score", dependencies=state.need("predict"))
    def score(body: ScoreRequest, request: Request) -> dict[str, Any]:
        started = time.perf_counter()
        served = state.app.state.served
        loaded = served.loaded
        scores = [loaded.model] * len(body.rows)
        request_id = request.state.request_id
        if state.log is not None:
            state.log.record(
                request_id,
                {"name": loaded.name, "version": loaded.version},
                [{"rows": len(body.rows)}],
                [scores[0]],
                [scores[0]],
                (time.perf_counter() - started) * 1000,
                "champion",
                None,
            )
        return {
            "scores": scores,
            "model": {"name": loaded.name, "version": loaded.version},
            "request_id": request_id,
        }

    return router
