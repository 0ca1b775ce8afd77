"""The tabular server's state: the one answer path of ``/predict``, v2 and the fast path.

A :class:`~keel.serving.ServingState` (keys, the log, privacy, cached pages) that also
answers rows: the A/B arm of the request's unit, else the canary's share, else the
champion; then the log, the metrics and, off the hot path, the shadow model.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from pydantic import ValidationError

from keel.families.tabular.serving.served import Served
from keel.serving._http import (
    SHADOW_BACKLOG,
    PredictRequest,
    canary_share,
    dumps_answer,
    error_answer,
    logger,
)
from keel.serving._state import ServingState


class TabularState(ServingState):
    """The core's state plus the tabular answer path (``explain_row``: ``/explain``)."""

    def __init__(self, *core: Any, explain_row: Any = None, **options: Any) -> None:
        super().__init__(*core, **options)  # the core's arguments, as ServingState takes them
        self.explain_row = explain_row
        canary = self.settings.canary
        self.percent = canary.percent if canary else 0.0
        self.shadows = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keel-shadow")
        self.backlog = threading.BoundedSemaphore(SHADOW_BACKLOG)

    def close(self) -> None:
        """Finish the shadow rows queued so far, then drain and commit the log."""
        self.shadows.shutdown(wait=True)  # shadow rows queued before the stop are logged too
        super().close()

    def answer_rows(
        self,
        instances: list[Any],
        request: Request,
        where_rows: str = "instances",
        unit: Any = None,
        opt_out: bool = False,
    ) -> tuple[Any, Any]:
        """Predict ``instances``: ``(answer, served)`` or ``(error response, None)``.

        ``unit`` (or, during an experiment, its unit field in the first row) puts the
        request in the running A/B test: the unit's arm answers. A request that opted
        out (``opt_out`` or the header) is answered and counted, not logged, and not
        sent to the shadow model (whose rows are logged).
        """
        settings, metrics, log = self.settings, self.metrics, self.log
        if len(instances) > settings.max_instances:
            return error_answer(
                422,
                f"{where_rows}: {len(instances)} rows; at most {settings.max_instances} per"
                " request (serving.max_instances)",
                request,
            ), None
        started = time.perf_counter()
        state = self.app.state
        served = state.served  # taken once: a swap does not touch this request
        route = "champion"
        assigned = None
        routing = state.experiments
        if routing is not None and routing.active is not None:
            unit, instances = _unit_of(unit, instances, routing.active.experiment, served)
            assigned = routing.assign(unit, served.version)
        if assigned is not None:
            if assigned.model is not None:
                served, route = assigned.model, "challenger"
        elif state.canary is not None and canary_share(request.state.request_id) < self.percent:
            served, route = state.canary, "canary"
        try:
            answer, errors = served.answer(
                instances, settings.extra_fields, settings.unseen_categories
            )
        except Exception:
            self.server_error(assigned)
            raise
        if errors:
            self.server_error(assigned)
            return self._refused(errors, request, where_rows), None
        scores = served.scores(answer)
        metrics.answered(
            served.version, answer["predictions"], scores, served.kind.labelled_classes
        )
        answer["request_id"] = request.state.request_id
        if assigned is not None:
            answer["experiment"] = assigned.to_dict()
        private = self.opted_out(request, opt_out)
        if private:
            self.count_opt_out(served.info["name"])
        elif log is not None:
            log.record(
                answer["request_id"],
                served.info,
                instances,
                answer["predictions"],
                scores,
                (time.perf_counter() - started) * 1000,
                route,
                assigned.logged if assigned is not None else None,
            )
        metrics.child(metrics.routed, route).inc()
        shadow_model = state.shadow
        if shadow_model is not None and route == "champion" and not private:
            if self.backlog.acquire(blocking=False):
                self.shadows.submit(
                    self.shadow_score,
                    shadow_model,
                    instances,
                    answer["predictions"],
                    answer["request_id"],
                )
            else:  # never slow the answer down for the shadow
                metrics.shadow_dropped.inc()
        return answer, served

    def _refused(self, errors: list[Any], request: Request, where_rows: str) -> Any:
        first = errors[0]
        where = f"{where_rows}[{first.row}]" + (f".{first.field}" if first.field else "")
        detail = [e.to_dict() for e in errors]
        anonymous = getattr(request.state, "key", None) is None
        if not self.settings.detailed_errors_for_anonymous and anonymous:
            return error_answer(422, "invalid instances (details need an API key)", request)
        return error_answer(422, f"{where}: {first.message}", request, detail)

    def shadow_score(
        self, model: Served, instances: list[Any], sent: list[Any], request_id: str
    ) -> None:
        """Score a request with the shadow model, off the hot path; log the agreement."""
        metrics, settings = self.metrics, self.settings
        try:
            started = time.perf_counter()
            answer, errors = model.answer(
                instances, settings.extra_fields, settings.unseen_categories
            )
            if errors or answer is None:
                metrics.errors.labels("shadow").inc()
                return
            agree = sum(a == b for a, b in zip(answer["predictions"], sent, strict=False))
            metrics.shadow_rows.labels("agree").inc(agree)
            metrics.shadow_rows.labels("disagree").inc(len(sent) - agree)
            if self.log is not None:
                self.log.record(
                    request_id,
                    model.info,
                    instances,
                    answer["predictions"],
                    model.scores(answer),
                    (time.perf_counter() - started) * 1000,
                    "shadow",
                )
        except Exception as exc:  # a shadow never breaks serving
            metrics.errors.labels("shadow").inc()
            logger.error("shadow scoring failed: %s", type(exc).__name__)
        finally:
            self.backlog.release()

    def fast_answer(self, raw: bytes, request: Request) -> Response | None:
        """The happy path of ``POST /predict`` without FastAPI's router, or None.

        None (the request goes through the app as usual, with every check and error
        answer in one place) whenever keys are configured or the body does not parse.
        """
        if self.keys:
            return None
        try:
            body = PredictRequest.model_validate_json(raw)
        except ValidationError:
            return None
        answer = self.answer_rows(body.instances, request, unit=body.unit, opt_out=body.opt_out)[0]
        if isinstance(answer, dict):
            return Response(dumps_answer(answer), media_type="application/json")
        return answer


def _unit_of(unit: Any, instances: list[Any], experiment: Any, served: Any) -> tuple[Any, list]:
    """The request's unit: the body's ``unit``, else the experiment's field in the first row.

    A unit field that is not one of the model's features is taken out of the rows (the
    model would refuse an unknown field).
    """
    field = experiment.unit_field
    first = instances[0] if instances else None
    if not isinstance(first, dict) or field not in first:
        return unit, instances
    if unit is None:
        unit = first[field]
    if field in served.feature_names:
        return unit, instances
    return unit, [
        {k: v for k, v in row.items() if k != field} if isinstance(row, dict) else row
        for row in instances
    ]
