"""The REST endpoint: FastAPI over a model package loaded from the registry.

``create_app`` asks the package's family for its app; every family builds it on the
one core (:func:`keel.serving.create_family_app`). Here: the lifespan, the error
answers, the shadow and canary look-up, the app from a ``ServingSpec``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from keel.serving._experiment import ExperimentRouting
from keel.serving._http import error_answer, logger
from keel.serving._log import PredictionLog
from keel.serving._spec import ServingSpec


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


def create_app(package: Any, max_body_bytes: int | None = None, **options: Any) -> FastAPI:
    """Build the app serving ``package``, whichever its family.

    The family recorded in the package (``keel.family``) builds it on the common core
    (:func:`keel.serving.create_family_app`): the core owns ``GET /health`` and
    ``/ready`` (open), ``/model``, ``/metrics`` (Prometheus), ``/dashboard``, API keys,
    the body cap and the error answers; the family adds its answer routes (a tabular
    model: ``POST /predict``, ``/explain`` and the v2 routes). Bad input gets a 4xx
    naming the row and field; an unexpected failure gets a 500 with only a request id
    (details go to the server log, never to the client).

    ``options`` are the core's (``settings``: keel.yaml's ``serving:``; ``log``;
    ``monitoring``; ``privacy``; ``follow=(alias, tracking_uri)`` to follow
    ``package.name@alias`` and swap models when it moves; ``poll_seconds``;
    ``experiments``: A/B routing) and the family's (a tabular model: ``explain_row``,
    ``shadow``, ``canary``).

    Raises
    ------
    ValueError
        When ``KEEL_API_KEYS`` is malformed.
    """
    from keel.families import FAMILIES

    family = FAMILIES.of_metadata(package.metadata)
    own = family.app(package, max_body_bytes=max_body_bytes, **options)
    if own is not None:
        return own
    from keel.serving._family_app import create_family_app

    parts = family.serving_parts()
    return create_family_app(package, family, max_body_bytes=max_body_bytes, **parts, **options)


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
    own = family.create_app(package, spec, log, explain_row)
    if own is not None:
        return own
    from keel.serving._family_app import family_app_from_spec

    parts = family.serving_parts()
    ab_tests = family.capabilities.ab_tests
    return family_app_from_spec(package, family, spec, log, ab_tests=ab_tests, **parts)


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
