"""Serving a tabular model: the common core with /predict, /explain, the v2 routes.

What differs from the other families: the answer routes (``POST /predict``,
``/explain``, the Open Inference Protocol v2), the compiled fast path for ``/predict``
(a middleware inside the core's), a shadow and a canary beside the served model (one
watcher follows all three aliases) and a dashboard of feature drift against the
package's reference. The core (:func:`keel.serving.create_family_app`) owns the rest.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, Response

from keel.config import ServingConfig
from keel.errors import ModelNotFoundError
from keel.families.tabular.serving.served import AliasWatcher, Served
from keel.families.tabular.serving.state import TabularState
from keel.registry import LoadedPackage, load_package
from keel.serving._app import experiment_routing
from keel.serving._http import logger
from keel.serving._spec import POLL_SECONDS
from keel.serving._state import ServingState

PAGE_SECONDS = 60.0  # a dashboard page is reused this long when the log did not change


def tabular_app(
    package: Any,
    max_body_bytes: int | None = None,
    *,
    shadow: Any = None,
    canary: Any = None,
    follow: tuple[str, str] | None = None,
    poll_seconds: float = POLL_SECONDS,
    **options: Any,
) -> FastAPI:
    """The app serving a tabular ``package`` (options as :func:`create_family_app`'s).

    ``shadow`` and ``canary``: loaded packages answering beside the served one (the
    alias watcher follows their aliases too, from ``settings``).
    """
    from keel.families import FAMILIES
    from keel.serving import create_family_app
    from keel.serving._middleware import FastRoute

    settings = options.get("settings") or ServingConfig()
    state = partial(TabularState, explain_row=options.pop("explain_row", None))
    canary_alias = settings.canary.alias if settings.canary else None

    def attach(app: FastAPI) -> None:
        app.state.shadow = Served(shadow, settings.shadow) if shadow is not None else None
        app.state.canary = Served(canary, canary_alias) if canary is not None else None

    def follower(app: FastAPI) -> AliasWatcher:
        extra = {"shadow": settings.shadow, "canary": canary_alias}
        extra = {slot: alias for slot, alias in extra.items() if alias}
        return AliasWatcher(app, package.name, follow[0], follow[1], poll_seconds, extra=extra)

    return create_family_app(
        package,
        FAMILIES.of_metadata(package.metadata),
        serve=lambda loaded: Served(loaded, follow[0] if follow else None),
        routes=routes,
        describe=lambda served: served.describe(),
        dashboard=dashboard,
        middleware=lambda state: [(FastRoute, {"path": "/predict", "answer": state.fast_answer})],
        attach=attach,
        follower=follower,
        state=state,
        follow=follow,
        poll_seconds=poll_seconds,
        max_body_bytes=max_body_bytes,
        **options,
    )


def routes(state: ServingState) -> APIRouter:
    """``POST /predict``, ``/explain`` and the Open Inference Protocol v2 routes."""
    from keel.families.tabular.serving.routes_predict import predict_routes
    from keel.families.tabular.serving.routes_v2 import v2_routes

    router = APIRouter()
    example_rows = (state.app.state.served.package.documents.get("background.json") or [])[:2]
    router.include_router(predict_routes(state, example_rows))
    router.include_router(v2_routes(state))
    return router


def create_tabular_app(package: Any, spec: Any, log: Any, explain_row: Any = None) -> Any:
    """The app serving a tabular package, with its shadow and canary when configured.

    ``explain_row`` (``/explain``): the family's SHAP explainer unless one is given.
    """
    if explain_row is None:
        from keel.families.tabular.responsible import explain_row
    settings = spec.serving
    shadow, canary = side_models(package.name, settings, spec.tracking_uri)
    return tabular_app(
        package,
        follow=(spec.follow_alias, spec.tracking_uri) if spec.follow_alias else None,
        poll_seconds=spec.poll_seconds,
        settings=settings,
        log=log,
        explain_row=explain_row,
        shadow=shadow,
        canary=canary,
        monitoring=spec.monitoring,
        experiments=experiment_routing(spec, package.name, _tabular_loader(package.name, spec)),
        privacy=spec.privacy,
    )


def side_models(
    name: str, settings: ServingConfig, tracking_uri: str
) -> tuple[LoadedPackage | None, LoadedPackage | None]:
    """The shadow and canary packages the settings name (None where the alias is unset)."""
    found = []
    for alias in (settings.shadow, settings.canary.alias if settings.canary else None):
        package = None
        if alias:
            try:
                package = load_package(f"{name}@{alias}", tracking_uri)
            except ModelNotFoundError:
                logger.warning("%s@%s does not exist (yet): not used until it does", name, alias)
        found.append(package)
    return found[0], found[1]


def _tabular_loader(name: str, spec: Any) -> Any:
    def load(version: str) -> Served:
        served = Served(load_package(f"{name}/{version}", spec.tracking_uri), "challenger")
        served.self_test()  # a challenger that cannot answer its own rows never serves
        return served

    return load


def dashboard(state: ServingState, request: Request, window: str | None) -> Response:
    """Feature and prediction drift of the served version over this server's log.

    The page is cached per log write: a GET that finds no new prediction or label (and
    is within a minute of the last page: time windows close as time passes) reuses it.
    """
    from keel.config import check_window
    from keel.monitoring import (
        DriftThresholds,
        load_state,
        log_frame,
        monitor,
        package_references,
        render_dashboard,
        state_path,
    )
    from keel.monitoring._logdb import last_write
    from keel.serving._experiment import with_experiment_link
    from keel.serving._http import error_answer
    from keel.serving._log import read_log

    served, log, monitoring = state.app.state.served, state.log, state.monitoring
    try:
        features, outputs = package_references(served.package.documents["drift_reference.json"])
    except (KeyError, ValueError):
        return error_answer(
            409,
            "this model's package has no readable drift reference (registered by an"
            " older Keel); train it again with `keel run`",
            request,
        )
    if log is None:
        return error_answer(409, "the prediction log is off (serving.prediction_log)", request)
    try:
        spec = check_window(window) if window is not None else monitoring.window
    except ValueError as exc:
        return error_answer(422, f"window: {exc}", request)
    log.flush()
    package = served.package
    stamp = (package.version, str(spec), *last_write(log.engine, package.name, package.version))
    cached = state.pages.get("dashboard")
    if cached is not None and cached[0] == stamp and time.time() - cached[1] < PAGE_SECONDS:
        page = with_experiment_link(cached[2], state.app.state.experiments)
        return HTMLResponse(page, headers={"X-Keel-Cache": "hit"})
    rows = read_log(log.url, model_name=package.name, model_version=package.version)
    report = monitor(
        log_frame(rows),
        features,
        outputs,
        {**package.metadata, "name": package.name, "version": package.version},
        window=spec,
        min_rows=monitoring.min_rows,
        thresholds=DriftThresholds.of(monitoring),
    )
    recent = load_state(state_path(log.url, Path.cwd())).get("recent", [])
    page = render_dashboard(report.to_dict(), recent)
    state.pages["dashboard"] = (stamp, time.time(), page)
    page = with_experiment_link(page, state.app.state.experiments)
    return HTMLResponse(page, headers={"X-Keel-Cache": "miss"})


def loadtest_bodies(model: dict[str, Any], tracking_uri: str, rows: int) -> tuple[str, list]:
    """``/predict`` with batches of ``rows`` of the package's example rows."""
    import json

    from keel.errors import KeelInputError

    package = load_package(f"{model['name']}/{model['version']}", tracking_uri)
    examples = package.documents.get("background.json") or []
    if not examples:
        raise KeelInputError(
            f"{model['name']} version {model['version']} has no example rows in its package"
        )
    return "/predict", [
        json.dumps(
            {"instances": [examples[(i * rows + j) % len(examples)] for j in range(rows)]}
        ).encode()
        for i in range(min(len(examples), 64))
    ]
