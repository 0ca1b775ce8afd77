"""What every server holds besides its models: settings, keys, metrics, the log, privacy.

The core's routes and every family's use it (``need(scope)`` for API keys, the log,
the opt-out rule, cached pages). A family whose routes need more subclasses it (the
tabular answer path: ``keel.families.tabular.serving.state.TabularState``).
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, Request
from starlette.exceptions import HTTPException as StarletteHTTPException

from keel.config import MonitoringConfig, PrivacyConfig, ServingConfig
from keel.serving._log import PredictionLog
from keel.serving._observe import Metrics, authenticate, presented_key


class ServingState:
    """The server's state, built once by ``create_app``; the app's models live beside it."""

    def __init__(
        self,
        app: FastAPI,
        settings: ServingConfig,
        monitoring: MonitoringConfig,
        keys: list[Any],
        metrics: Metrics,
        log: PredictionLog | None,
        privacy: PrivacyConfig | None = None,
    ) -> None:
        self.app, self.settings, self.monitoring = app, settings, monitoring
        self.privacy = privacy or PrivacyConfig()
        self.keys, self.metrics, self.log = keys, metrics, log
        app.state.experiments = None  # an ExperimentRouting when the log is on
        self.pages: dict[str, tuple[Any, float, str]] = {}  # cached pages, by log write

    def close(self) -> None:
        """Drain and commit the log (a family's state finishes its own work first)."""
        if self.log is not None:
            self.log.close()  # drain and commit: a graceful stop loses no prediction

    def opted_out(self, request: Request, asked: bool = False) -> bool:
        """Whether the request asked not to be stored (its body, or the opt-out header)."""
        if asked:
            return True
        value = request.headers.get(self.privacy.opt_out_header)
        return value is not None and value.strip().lower() in ("1", "true", "yes", "on")

    def count_opt_out(self, model_name: str) -> None:
        """Count a request that is answered and not stored."""
        self.metrics.opted_out.inc()
        if self.log is not None:
            self.log.opted_out(model_name)

    def need(self, scope: str) -> list[Any]:
        """The route's dependencies: a key with ``scope`` (admin has every scope).

        None without configured keys: then every route is open and nothing is checked.
        """
        keys = self.keys

        async def check(request: Request) -> None:  # async: no thread hop per request
            key = authenticate(presented_key(request.headers), keys)
            if key is None:
                raise StarletteHTTPException(
                    401,
                    "missing or unknown API key: send Authorization: Bearer KEY",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            if scope not in key.scopes and "admin" not in key.scopes:
                raise StarletteHTTPException(403, f"this key lacks the {scope!r} scope")
            request.state.key = key.name

        return [Depends(check)] if keys else []

    def server_error(self, assigned: Any) -> None:
        """Count a refused or failed request of an experiment's unit (``error_rate``)."""
        if assigned is not None and self.log is not None:
            self.log.outcomes(
                [
                    {
                        "unit": assigned.unit,
                        "metric": "errors",
                        "value": 1.0,
                        "source": "server",
                        "experiment": assigned.name,
                        "arm": assigned.arm,
                    }
                ]
            )
