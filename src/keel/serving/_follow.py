"""Following an alias for apps whose served model is one package (recommender, retrieval).

A background thread polls the registry; when the alias moves, it loads the new version,
which must pass its self-test, and swaps it in atomically: requests in flight finish on
the model they took.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from keel.serving._http import logger


class PackageFollower:
    """Polls the registry every ``seconds``; swaps ``app.state.served`` when ``alias`` moves.

    ``load(uri, tracking_uri)`` loads a registered version; ``serve(loaded)`` wraps it
    as the app serves it (with ``version``, ``info``, ``loaded`` and ``check_ready()``).
    """

    def __init__(
        self,
        app: Any,
        alias: str,
        tracking_uri: str,
        seconds: float,
        load: Callable[[str, str], Any],
        serve: Callable[[Any], Any],
    ) -> None:
        self.app, self.alias, self.tracking_uri, self.seconds = app, alias, tracking_uri, seconds
        self.load, self.serve = load, serve
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="keel-alias", daemon=True)

    def start(self) -> None:
        """Begin polling."""
        self.thread.start()

    def stop(self) -> None:
        """Stop polling."""
        self.stop_event.set()

    def _run(self) -> None:
        from keel.registry import alias_version, mlflow_scope

        while not self.stop_event.wait(self.seconds):
            served = self.app.state.served
            try:
                with mlflow_scope(self.tracking_uri) as client:
                    version = alias_version(client, served.loaded.name, self.alias)
                if version is None or version == served.version:
                    continue
                loaded = self.load(f"{served.loaded.name}/{version}", self.tracking_uri)
                loaded.alias = self.alias
                fresh = self.serve(loaded)
                if fresh.check_ready()[0]:
                    self.app.state.served = fresh  # requests in flight keep the old one
                    self.app.state.metrics.serving(fresh.info, served.info)
                    logger.warning("now serving %s version %s", loaded.name, version)
            except Exception as exc:  # the registry is down: keep serving, try again
                logger.warning("alias check failed: %s", type(exc).__name__)
