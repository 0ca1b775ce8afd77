"""The REST endpoint: FastAPI over a model package loaded from the registry.

``create_app`` only assembles: the models (:class:`Served`), the state
(:class:`ServingState`), the middleware, the error handlers and one router per
concern (operations, answers, Open Inference Protocol v2).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from keel.config import MonitoringConfig, PrivacyConfig, ServingConfig
from keel.errors import ModelNotFoundError
from keel.registry import LoadedPackage, load_package
from keel.serving._experiment import ExperimentRouting, experiment_routes
from keel.serving._http import ERROR_RESPONSES, error_answer, logger
from keel.serving._log import PredictionLog
from keel.serving._middleware import _FastPredict, _RequestContext
from keel.serving._observe import Metrics, Observed, load_keys
from keel.serving._routes_ops import ops_routes
from keel.serving._routes_predict import predict_routes
from keel.serving._routes_v2 import v2_routes
from keel.serving._served import AliasWatcher, Served
from keel.serving._spec import POLL_SECONDS, ServingSpec
from keel.serving._state import ServingState


@asynccontextmanager
async def serving_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Self-test before traffic, follow the alias while serving, drain the log on stop."""
    app.state.served.check_ready()  # the model answered its own examples
    if app.state.watcher is not None:
        app.state.watcher.start()
    routing = getattr(app.state, "experiments", None)
    if routing is not None:
        routing.start()  # reads the running experiment before the first request
    yield
    if app.state.watcher is not None:
        app.state.watcher.stop()
    if routing is not None:
        routing.stop()
    app.state.keel.close()


def create_app(
    package: LoadedPackage,
    max_body_bytes: int | None = None,
    *,
    follow: tuple[str, str] | None = None,
    poll_seconds: float = POLL_SECONDS,
    settings: ServingConfig | None = None,
    log: PredictionLog | None = None,
    explain_row: Any = None,
    shadow: LoadedPackage | None = None,
    canary: LoadedPackage | None = None,
    monitoring: MonitoringConfig | None = None,
    experiments: ExperimentRouting | None = None,
    privacy: PrivacyConfig | None = None,
) -> FastAPI:
    """Build the app serving ``package``.

    Routes: ``POST /predict``; ``GET /health`` and ``/ready`` (open); ``GET /model``;
    ``GET /metrics`` (Prometheus). Bad input gets a 4xx naming the row and field; an
    unexpected failure gets a 500 with only a request id (details go to the server
    log, never to the client). ``settings`` is keel.yaml's ``serving:`` (caps, extra
    fields, API keys); ``follow=(alias, tracking_uri)`` makes the app follow
    ``package.name@alias`` in the registry and swap models when it moves
    (:class:`AliasWatcher`); ``experiments`` routes A/B-test units (``keel experiment``).

    Raises
    ------
    ValueError
        When ``KEEL_API_KEYS`` is malformed.
    """
    settings = settings or ServingConfig()
    keys = load_keys(settings.api_keys)

    app = FastAPI(
        title=f"Keel — {package.name}",
        version=package.version,
        description=f"Model {package.name} version {package.version} ({package.task})."
        + (" Every route but /health and /ready needs an API key." if keys else ""),
        lifespan=serving_lifespan,
        responses=ERROR_RESPONSES,
        # FastAPI checks per request whether OpenTelemetry providers are set up (~10 µs)
        telemetry=None
        if settings.opentelemetry
        else {"tracing": False, "metrics": False, "logs": False},
    )
    metrics = Metrics()
    state = ServingState(
        app, settings, monitoring or MonitoringConfig(), keys, metrics, log, explain_row, privacy
    )
    _models(app, package, follow, poll_seconds, settings, shadow, canary)
    app.state.keel, app.state.metrics = state, metrics  # the watcher counts swaps
    app.state.experiments = experiments
    metrics.serving(app.state.served.info)
    # innermost first: the fast /predict path sees the request id and the body cap
    app.add_middleware(_FastPredict, answer=state.fast_answer)
    cap = max_body_bytes if max_body_bytes is not None else settings.max_body_bytes
    app.add_middleware(_RequestContext, max_body_bytes=cap)
    app.add_middleware(Observed, metrics=metrics, version_of=lambda: app.state.served.version)
    _error_handlers(app)
    app.include_router(ops_routes(state))
    example_rows = (package.documents.get("background.json") or [])[:2]
    app.include_router(predict_routes(state, example_rows))
    app.include_router(v2_routes(state))
    app.include_router(experiment_routes(state))
    return app


def _models(
    app: FastAPI,
    package: LoadedPackage,
    follow: tuple[str, str] | None,
    poll_seconds: float,
    settings: ServingConfig,
    shadow: LoadedPackage | None,
    canary: LoadedPackage | None,
) -> None:
    """The served, shadow and canary models on ``app.state``, and the alias watcher."""
    app.state.served = Served(package, follow[0] if follow else None)
    app.state.shadow = Served(shadow, settings.shadow) if shadow is not None else None
    canary_alias = settings.canary.alias if settings.canary else None
    app.state.canary = Served(canary, canary_alias) if canary is not None else None
    watcher = None
    if follow is not None:
        extra = {}
        if settings.shadow:
            extra["shadow"] = settings.shadow
        if canary_alias:
            extra["canary"] = canary_alias
        watcher = AliasWatcher(app, package.name, follow[0], follow[1], poll_seconds, extra=extra)
    app.state.watcher = watcher


def _error_handlers(app: FastAPI) -> None:
    """Every error answer in one shape: ``{error, request_id, detail}``."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = []
        for e in exc.errors()[:20]:
            loc, msg = list(e.get("loc", ())), e.get("msg", "")
            if e.get("type") == "json_invalid" and not msg.startswith("not valid JSON"):
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
        return error_answer(422, f"{where}: {first['msg']}", request, detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        answer = error_answer(exc.status_code, str(exc.detail), request)
        for name, value in (exc.headers or {}).items():
            answer.headers[name] = value
        return answer

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        logger.error(
            "request %s failed: %s", request.state.request_id, type(exc).__name__, exc_info=exc
        )
        return error_answer(500, "internal error; quote the request_id to the operator", request)


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


def create_app_from_spec(
    spec: ServingSpec, explain_row: Any = None, package: Any = None
) -> FastAPI:
    """The app a :class:`ServingSpec` describes (``package``: already loaded from it).

    The package's recorded family (``keel.family``) loads it and builds its app on the
    common core (:func:`create_app` for rows of features; a family's own routes
    otherwise); the prediction log is opened here, for every family alike.
    """
    from keel.families import FAMILIES
    from keel.registry import package_family

    if package is None:
        family = package_family(spec.model, spec.tracking_uri)
        package = family.load(spec.model, spec.tracking_uri)
    else:
        family = FAMILIES.of_metadata(package.metadata)
    settings, privacy = spec.serving, spec.privacy
    log = (
        PredictionLog(
            spec.log_url,
            settings.log_flush_seconds,
            settings.redact,
            subject_column=privacy.subject_column or family.log_subject(package),
            retention_days=privacy.retention_days,
        )
        if spec.log_url
        else None
    )
    return family.create_app(package, spec, log, explain_row)


def experiment_routing(spec: ServingSpec, name: str, load: Any) -> ExperimentRouting | None:
    """A/B routing from the prediction log's experiments (none without a log)."""
    if not spec.log_url:
        return None
    return ExperimentRouting(spec.log_url, name, load, spec.poll_seconds)


def create_app_from_env(explain_row: Any = None) -> FastAPI:
    """App factory for ``uvicorn --factory`` (one per worker process).

    Reads the :class:`ServingSpec` that ``keel serve`` put in ``KEEL_SERVE_SPEC``.
    """
    return create_app_from_spec(ServingSpec.from_env(), explain_row)
