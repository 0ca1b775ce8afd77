"""A/B routing in a running server: follow the experiment in the log, assign units to arms.

``keel experiment start`` writes a running experiment into the prediction log's
database. Each worker polls it (:class:`ExperimentRouting`, every ``poll_seconds``, and
once at start-up), loads the challenger version from the registry, self-tests it, and
from then on answers a request that names a unit with the arm that unit's salted hash
gives: the same arm on every worker, request and restart. Requests without a unit are
answered by the champion and are not part of the experiment.

The champion arm is the model the server is serving; if that is no longer the version
the experiment started against (the alias moved), routing pauses — the comparison
would not be the one planned — and resumes if it moves back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from keel.evaluation._experiments import CHALLENGER_ARM
from keel.monitoring._experiments import Experiment, running_experiment
from keel.monitoring._logdb import open_log
from keel.serving._http import ERROR_RESPONSES, logger

MAX_UNIT_CHARS = 200


@dataclass(frozen=True)
class Active:
    """The running experiment and its loaded challenger."""

    experiment: Experiment
    challenger: Any  # a Served (tabular) or the recommender's served model


@dataclass(frozen=True)
class Assignment:
    """One request's place in the experiment."""

    name: str
    arm: str
    unit: str
    model: Any  # what answers: the challenger, or None for the champion

    @property
    def logged(self) -> tuple[str, str, str]:
        """``(experiment, arm, unit)`` as the prediction log stores them."""
        return self.name, self.arm, self.unit

    def to_dict(self) -> dict[str, str]:
        """What the answer tells the client."""
        return {"name": self.name, "arm": self.arm}


class ExperimentRouting:
    """Follow the running experiment of ``model_name`` in the log at ``url``."""

    def __init__(
        self,
        url: str,
        model_name: str,
        load_challenger: Callable[[str], Any],
        poll_seconds: float = 5.0,
    ) -> None:
        self.url, self.model_name, self.load = url, model_name, load_challenger
        self.poll_seconds = poll_seconds
        self.active: Active | None = None
        self._failed: str | None = None
        self._engine: Any = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="keel-experiment", daemon=True)

    def start(self) -> None:
        """Read the running experiment now, then poll for changes."""
        try:
            self.refresh()
        except Exception as exc:  # the log is unreachable: serve, and try again
            logger.warning("experiment check failed: %s", type(exc).__name__)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
        if self._engine is not None:
            self._engine.dispose()

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh()
            except Exception as exc:
                logger.warning("experiment check failed: %s", type(exc).__name__)

    def refresh(self) -> bool:
        """Pick up a started or stopped experiment; True when routing changed."""
        if self._engine is None:
            self._engine = open_log(self.url)
        found = running_experiment(self._engine, self.model_name)
        held = self.active
        if found is None:
            if held is not None:
                self.active = None
                logger.warning(
                    "experiment %s ended: every request to the champion", held.experiment.name
                )
                return True
            return False
        if held is not None and held.experiment.name == found.name:
            return False
        if found.name == self._failed:
            return False
        try:
            challenger = self.load(found.challenger_version)
        except Exception as exc:  # the champion keeps answering everything
            self._failed = found.name
            logger.error(
                "experiment %s: challenger version %s failed to load (%s); not routing",
                found.name,
                found.challenger_version,
                type(exc).__name__,
            )
            return False
        self.active = Active(found, challenger)
        logger.warning(
            "experiment %s: %g %% of units to version %s (unit field %r)",
            found.name,
            found.split,
            found.challenger_version,
            found.unit_field,
        )
        return True

    def assign(self, unit: Any, champion_version: str) -> Assignment | None:
        """The arm of ``unit`` in the running experiment (None: not in one)."""
        active = self.active
        if active is None or unit is None or isinstance(unit, bool):
            return None
        experiment = active.experiment
        if str(champion_version) != experiment.champion_version:
            return None  # the alias moved away from the planned champion: paused
        key = str(unit)[:MAX_UNIT_CHARS]
        if not key:
            return None
        arm = experiment.arm_of(key)
        model = active.challenger if arm == CHALLENGER_ARM else None
        return Assignment(experiment.name, arm, key, model)

    def describe(self) -> dict[str, Any] | None:
        """``GET /experiment``: what the server routes now."""
        active = self.active
        if active is None:
            return None
        e = active.experiment
        return {
            "name": e.name,
            "champion_version": e.champion_version,
            "challenger_version": e.challenger_version,
            "split": e.split,
            "unit_field": e.unit_field,
            "started": e.started,
            "page": f"/experiments/{e.name}",
        }


def record_outcomes(
    log: Any, outcomes: list[Any], request_id: str | None, request: Any
) -> Any | None:
    """Queue ``outcomes`` (``Outcome`` models) in ``log``; an error answer, or None.

    Every request id named must be in the log (404 naming the first that is not); the
    outcome of a request is its unit's when the analysis reads it.
    """
    from keel.serving._http import error_answer

    rows = [
        {
            "metric": o.metric,
            "value": o.value,
            "unit": o.unit,
            # an outcome without unit or request id follows the body's request
            "request_id": o.request_id or (request_id if o.unit is None else None),
        }
        for o in outcomes
    ]
    named = {r["request_id"] for r in rows if r["request_id"] is not None}
    if named:
        unknown = sorted(named - log.known_requests(named))
        if unknown:
            return error_answer(
                404,
                f"outcomes: request_id {unknown[0]!r} is not in the prediction log"
                + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else "")
                + "; nothing was recorded",
                request,
            )
    log.outcomes(rows)
    return None


def experiment_routes(state: Any) -> APIRouter:
    """``GET /experiment`` (what this server routes) and ``GET /experiments/NAME`` (the page)."""
    from keel.errors import KeelInputError
    from keel.serving._http import error_answer

    router = APIRouter()

    @router.get(
        "/experiment",
        dependencies=state.need("predict"),
        responses={404: {"description": "No experiment is running on this server."}},
    )
    def running(request: Request) -> Any:
        """The A/B test this server routes now: versions, split, unit field, its page."""
        routing = state.app.state.experiments
        found = routing.describe() if routing is not None else None
        if found is None:
            return error_answer(404, "no experiment is running on this server", request)
        return found

    @router.get(
        "/experiments/{name}",
        dependencies=state.need("admin"),
        response_class=HTMLResponse,
        responses={
            200: {"content": {"text/html": {"schema": {"type": "string"}}}},
            # errors stay JSON: say so, or they would be documented as text/html
            **{
                code: {**ERROR_RESPONSES[code], "content": {"application/json": {}}}
                for code in (401, 403, 404, 409, 422, 500)
            },
        },
    )
    def page(name: str, request: Request) -> Response:
        """The page of experiment ``name``: decision, arms, SRM, effects over time."""
        from keel.monitoring._experiment_page import render_experiment_page
        from keel.monitoring._experiments import analyze, read_experiment, timeline

        if state.log is None:
            return error_answer(409, "the prediction log is off (serving.prediction_log)", request)
        state.log.flush()
        try:
            logged = read_experiment(state.log.url, name[:100])
            found = analyze(logged)
        except KeelInputError as exc:
            status = 404 if str(exc).startswith("no experiment") else 409
            return error_answer(status, str(exc), request)
        return HTMLResponse(render_experiment_page(found, timeline(logged)))

    return router


def with_experiment_link(page: str, routing: Any) -> str:
    """A dashboard page with a link to the running experiment's page, when there is one."""
    found = routing.describe() if routing is not None else None
    if found is None:
        return page
    link = (
        f"<p id='experiment'>A/B test running: <a href='{found['page']}'>{found['name']}</a>"
        f" — version {found['challenger_version']} gets {found['split']:g} % of units.</p>"
    )
    return page.replace("<body>", "<body>" + link, 1)


__all__ = [
    "Active",
    "Assignment",
    "ExperimentRouting",
    "experiment_routes",
    "record_outcomes",
    "with_experiment_link",
]
