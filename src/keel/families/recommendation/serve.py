"""The REST endpoint of a recommender: ``POST /recommend`` over a registered package.

``POST /recommend`` ``{"user_id": ..., "k": 10, "exclude": [...], "history": [...],
"filters": {"include": [...], "exclude": [...], "where": {"genre": ["Comedy"]}}}``
answers ``{"items": [{"item_id", "score"}], "cold_start", "known_user", "model",
"request_id"}``. A user the model never saw, with no history in the request, gets the
popularity list **and** ``cold_start: true`` (never a silent fallback); a history in
the request is folded in without retraining; item ids the catalogue does not hold are
a 422 naming them. Filters and keel.yaml's business rules (``recommend.rules``) apply
before the top-K cut, so K items come back whenever K qualify; a condition on an
attribute the model's catalogue lacks is a 422 listing the attributes. Every answer
goes to the prediction log (user, k, sizes of history and exclusions, whether filtered,
the items answered, whether cold); ``POST /feedback`` takes the items a user then
clicked or consumed, by request id. The same middleware as ``/predict``:
request ids, the body cap, API keys with scopes, Prometheus metrics, errors without
internals.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from keel.config import MonitoringConfig, ServingConfig
from keel.families.recommendation.package import LoadedRecommender
from keel.families.recommendation.rules import Filters, RuleError
from keel.serving._experiment import (
    record_outcomes,
)
from keel.serving._http import (
    MAX_OUTCOMES,
    REQUEST_ID,
    Outcome,
    check_outcomes,
    dumps_answer,
    error_answer,
)
from keel.serving._log import PredictionLog
from keel.serving._state import ServingState

MAX_K = 1000
MAX_ITEMS_IN_REQUEST = 10_000
MAX_LOGGED_HISTORY = 100
Id = str | int


class RecommendFilters(BaseModel):
    """Which items this answer may hold, applied before the top-K cut.

    ``include``: only these items (an allow-list). ``exclude``: never these (a
    block-list). ``where``: conditions on item attributes, all of which must hold:
    ``{"genre": ["Comedy", "Drama"]}`` (any of), ``{"available": true}`` (equals),
    ``{"year": {">=": 1990}}`` (``==``, ``!=``, ``>``, ``>=``, ``<``, ``<=``, ``in``,
    ``not_in``).
    """

    model_config = ConfigDict(extra="forbid")
    include: list[Id] | None = Field(None, max_length=MAX_ITEMS_IN_REQUEST)
    exclude: list[Id] = Field(default_factory=list, max_length=MAX_ITEMS_IN_REQUEST)
    where: dict[str, Any] = Field(default_factory=dict, max_length=20)


class RecommendRequest(BaseModel):
    """One user's request: who, how many, what to leave out, what they just had."""

    model_config = ConfigDict(extra="forbid")
    user_id: Id = Field(description="The user (a new one gets popularity, flagged cold_start).")
    k: int = Field(10, ge=1, le=MAX_K, description="How many items to return.")
    exclude: list[Id] = Field(default_factory=list, max_length=MAX_ITEMS_IN_REQUEST)
    history: list[Id] = Field(
        default_factory=list,
        max_length=MAX_ITEMS_IN_REQUEST,
        description="Items the user had that the model has not seen (folded in).",
    )
    filters: RecommendFilters | None = Field(
        None, description="Allow-list, block-list and item-attribute conditions."
    )
    user_attributes: dict[str, str | int | float | bool] | None = Field(
        None,
        max_length=20,
        description="A new user's attributes (recommend.cold_start): their segment's list.",
    )
    unit: Id | None = Field(
        None, description="The A/B-test unit when it is not the user (default: user_id)."
    )
    opt_out: bool = Field(False, description="Answer, but do not store this request.")


class RecommendFeedback(BaseModel):
    """``{"request_id": ..., "items": [...]}``: what the user clicked or consumed.

    ``outcomes`` (as on ``/predict``'s ``/feedback``) carry A/B-test outcomes.
    """

    model_config = ConfigDict(extra="forbid")
    request_id: str | None = Field(None, min_length=1, max_length=64, pattern=REQUEST_ID)
    items: list[Id] | None = Field(None, max_length=MAX_ITEMS_IN_REQUEST)
    outcomes: list[Outcome] = Field(default_factory=list, max_length=MAX_OUTCOMES)
    opt_out: bool = Field(False, description="Do not store this feedback (counted only).")

    @model_validator(mode="after")
    def _complete(self) -> RecommendFeedback:
        check_outcomes(self.request_id, self.outcomes)
        if self.items is None and not self.outcomes:
            raise ValueError("send items (with request_id) or outcomes")
        if self.items is not None and self.request_id is None:
            raise ValueError("items need the request_id of the answer they follow")
        return self


class _Served:
    """What the shared middleware and metrics read: the model's name and version."""

    def __init__(self, loaded: LoadedRecommender) -> None:
        self.loaded = loaded
        self.version = loaded.version
        self.info = {
            "name": loaded.name,
            "version": loaded.version,
            "alias": loaded.alias,
            "semver": loaded.semver,
        }
        self.ready: tuple[bool, str] | None = None

    def check_ready(self) -> tuple[bool, str]:
        """The model answers a known user and a new one (once; then remembered)."""
        if self.ready is None:
            model = self.loaded.model
            try:
                known = model.recommend(model.user_ids[0], k=3)
                new = model.recommend("\x00keel-self-test", k=3)
                ok = bool(known["items"]) and new["cold_start"] and bool(new["items"])
                self.ready = (ok, "answered a known and a new user" if ok else "empty lists")
            except Exception as exc:  # reported: the server stays not ready
                self.ready = (False, f"self-test failed: {type(exc).__name__}")
        return self.ready


def create_recommender_app(
    loaded: LoadedRecommender,
    settings: ServingConfig | None = None,
    log: PredictionLog | None = None,
    max_body_bytes: int | None = None,
    monitoring: MonitoringConfig | None = None,
    follow: tuple[str, str] | None = None,
    poll_seconds: float = 5.0,
    experiments: Any = None,
    privacy: Any = None,
) -> FastAPI:
    """Build the app serving the recommender ``loaded`` (the serving core + ``/recommend``).

    ``follow=(alias, tracking_uri)``: when ``keel promote`` or ``keel rollback`` moves the
    alias, the new version is loaded, must answer its self-test, and replaces the old.
    """
    from keel.families import FAMILIES
    from keel.serving import create_family_app

    return create_family_app(
        loaded,
        FAMILIES.of_metadata(loaded.metadata),
        settings=settings,
        log=log,
        monitoring=monitoring,
        privacy=privacy,
        follow=follow,
        poll_seconds=poll_seconds,
        experiments=experiments,
        max_body_bytes=max_body_bytes,
        **APP_PARTS,
    )


def _describe(served: _Served) -> dict[str, Any]:
    """What ``GET /model`` says of a recommender: catalogue, users, cut-offs, request."""
    loaded = served.loaded
    model = loaded.model
    return {
        "candidate": loaded.metadata.get("candidate"),
        "items": model.n_items,
        "users": len(model.user_ids),
        "ks": loaded.metadata.get("ks"),
        "item_attributes": model.attributes.names(),
        "cold_start_segments": {
            "attributes": model.segments.attributes,
            "segments": len(model.segments.keys),
        },
        "rules": model.rules.described,
        "request": RecommendRequest.model_json_schema(),
        "example_users": [str(u) for u in model.user_ids[:20]],
    }


def _routes(state: ServingState) -> APIRouter:
    router = APIRouter()
    app = state.app

    @router.post("/recommend", dependencies=state.need("predict"))
    async def recommend(body: RecommendRequest, request: Request) -> Response:
        """Top-K items the user has not had, best first, and whether this is cold start."""
        # async: well under a millisecond of NumPy, cheaper than a hop to a worker thread
        started = time.perf_counter()
        served = app.state.served  # taken once: a swap does not touch this request
        assigned = None
        if state.app.state.experiments is not None:
            unit = body.unit if body.unit is not None else body.user_id
            assigned = state.app.state.experiments.assign(unit, served.version)
            if assigned is not None and assigned.model is not None:
                served = assigned.model
        loaded = served.loaded
        model = loaded.model
        filters = Filters.of(body.filters.model_dump()) if body.filters is not None else None
        try:
            answer = model.recommend(
                body.user_id, body.k, body.history, body.exclude, filters, body.user_attributes
            )
        except RuleError as exc:
            state.server_error(assigned)
            return error_answer(422, f"filters: {exc}", request)
        except KeyError as exc:
            state.server_error(assigned)
            unknown = list(exc.args[0]) if exc.args else []
            shown = ", ".join(map(repr, unknown[:10])) + (" …" if len(unknown) > 10 else "")
            return error_answer(
                422,
                f"history/exclude/filters: {len(unknown)} item id(s) not in the catalogue of"
                f" {loaded.name} version {loaded.version}: {shown}; send known item ids",
                request,
                {"unknown_items": [str(u) for u in unknown[:100]]},
            )
        request_id = request.state.request_id
        answer |= {
            "model": {"name": loaded.name, "version": loaded.version},
            "request_id": request_id,
        }
        if assigned is not None:
            answer["experiment"] = assigned.to_dict()
        latency = (time.perf_counter() - started) * 1000
        if state.opted_out(request, body.opt_out):
            state.count_opt_out(loaded.name)
        elif state.log is not None:
            arm = "challenger" if assigned is not None and assigned.model is not None else None
            state.log.record(
                request_id,
                {"name": loaded.name, "version": loaded.version},
                [_logged_request(body, answer, filters)],
                [[i["item_id"] for i in answer["items"]]],
                [answer["items"][0]["score"] if answer["items"] else None],
                latency,
                arm or "champion",
                assigned.logged if assigned is not None else None,
            )
        return Response(dumps_answer(answer), media_type="application/json")

    @router.post("/feedback", dependencies=state.need("predict"))
    def feedback(body: RecommendFeedback, request: Request) -> JSONResponse:
        """Items the user clicked or consumed after the answer ``request_id``."""
        if state.log is None:
            return error_answer(409, "the prediction log is off (serving.prediction_log)", request)
        if state.opted_out(request, body.opt_out):  # consent withheld: nothing is stored
            state.count_opt_out(app.state.served.loaded.name)
            return JSONResponse({"status": "not stored (opt-out)"})
        found: dict[str, Any] = {}
        if body.items is not None and body.request_id is not None:
            if not state.log.has_request(body.request_id):
                return error_answer(
                    404, f"request_id {body.request_id!r}: no such answer in the log", request
                )
            _, unknown = app.state.served.loaded.model.item_index(body.items)
            if unknown:
                return error_answer(
                    422,
                    f"items: not in the catalogue: {', '.join(map(repr, unknown[:10]))}",
                    request,
                )
            found |= {"recorded": len(body.items), "request_id": body.request_id}
        if body.outcomes:
            refused = record_outcomes(state.log, body.outcomes, body.request_id, request)
            if refused is not None:
                return refused
            found["outcomes"] = len(body.outcomes)
        if body.items is not None and body.request_id is not None:
            state.log.feedback(body.request_id, [[str(i) for i in body.items]])
        return JSONResponse(found)

    return router


def _logged_request(
    body: RecommendRequest, answer: dict[str, Any], filters: Filters | None
) -> dict[str, Any]:
    """What the prediction log keeps of one request: sizes, not the lists sent."""
    return {
        "user_id": str(body.user_id),
        "k": body.k,
        "history_size": len(body.history),
        # what the request brought (popularity drift of requested items)
        "history": [str(i) for i in body.history[:MAX_LOGGED_HISTORY]],
        "exclude_size": len(body.exclude),
        "filtered": filters is not None and not filters.empty,
        "segment": answer.get("segment"),
        "cold_start": answer["cold_start"],
    }


APP_PARTS: dict[str, Any] = {"serve": _Served, "routes": _routes, "describe": _describe}


def loadtest_bodies(model: dict[str, Any], tracking_uri: str, rows: int) -> tuple[str, list]:
    """``/recommend`` for the known example users, and one new user (the cold start)."""
    import json

    from keel.errors import KeelInputError

    users = model.get("example_users") or []
    if not users:
        raise KeelInputError(f"{model['name']} version {model['version']} lists no users")
    ids = [*users, "keel-loadtest-new-user"] if len(users) >= 7 else users
    return "/recommend", [json.dumps({"user_id": u, "k": 10}).encode() for u in ids]
