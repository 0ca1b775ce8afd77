"""Serving a tabular model: the common app with /predict, /explain and the v2 routes."""

from __future__ import annotations

from typing import Any

from keel.registry import load_package
from keel.serving._app import create_app, experiment_routing, side_models
from keel.serving._served import Served


def create_tabular_app(package: Any, spec: Any, log: Any, explain_row: Any = None) -> Any:
    """The app serving a tabular package, with its shadow and canary when configured."""
    settings = spec.serving
    shadow, canary = side_models(package.name, settings, spec.tracking_uri)
    return create_app(
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


def _tabular_loader(name: str, spec: Any) -> Any:
    def load(version: str) -> Served:
        served = Served(load_package(f"{name}/{version}", spec.tracking_uri), "challenger")
        served.self_test()  # a challenger that cannot answer its own rows never serves
        return served

    return load


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
