"""What the server tells operators (Prometheus metrics) and whom it answers (API keys)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

API_KEYS_ENV = "KEEL_API_KEYS"
# Endpoints the metrics name (anything else is "other": no label explosion from scanners)
ROUTES = (
    "/predict",
    "/dashboard",
    "/explain",
    "/feedback",
    "/health",
    "/ready",
    "/model",
    "/metrics",
    "/v2",
    "/v2/health/live",
    "/v2/health/ready",
    "/v2/models",
    "/docs",
    "/openapi.json",
)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ERROR_KINDS = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method",
    413: "too_large",
    415: "media_type",
    422: "validation",
}


class Metrics:
    """The server's Prometheus metrics, in a registry of its own (one per app)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.requests = Counter(
            "keel_requests",
            "HTTP requests answered",
            ["endpoint", "status", "model_version"],
            registry=r,
        )
        self.latency = Histogram(
            "keel_request_seconds",
            "Time to answer, by endpoint",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter("keel_errors", "Error answers by kind", ["kind"], registry=r)
        self.predictions = Counter(
            "keel_predictions",
            "Predictions by answered class (classification)",
            ["model_version", "prediction"],
            registry=r,
        )
        self.scores = Histogram(
            "keel_prediction_score",
            "Positive-class probability (binary) or predicted value (regression)",
            ["model_version"],
            buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 10, 100, 1e3, 1e4, 1e5, 1e6),
            registry=r,
        )
        self.rows = Counter("keel_rows", "Rows predicted", ["model_version"], registry=r)
        self.model = Gauge(
            "keel_model_info",
            "The model being served (1 for the current one)",
            ["name", "version", "alias"],
            registry=r,
        )
        self.swaps = Counter("keel_model_swaps", "Hot swaps to a new model version", registry=r)
        self.opted_out = Counter(
            "keel_opted_out", "Requests answered and not stored (opt-out)", registry=r
        )
        self.routed = Counter(
            "keel_routed", "Predict requests by the model that answered", ["route"], registry=r
        )
        self.shadow_rows = Counter(
            "keel_shadow_rows",
            "Rows the shadow model scored, by agreement with the answer sent",
            ["outcome"],
            registry=r,
        )
        self.shadow_dropped = Counter(
            "keel_shadow_dropped", "Requests not shadowed (backlog full)", registry=r
        )

    def serving(self, info: dict[str, Any], previous: dict[str, Any] | None = None) -> None:
        """Mark ``info`` as the model being served (and ``previous`` as no longer)."""
        if previous is not None:
            self.model.labels(previous["name"], previous["version"], previous["alias"] or "").set(0)
        self.model.labels(info["name"], info["version"], info["alias"] or "").set(1)

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, looked up once (label sets here are few)."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def answered(
        self,
        version: str,
        predictions: Iterable[Any],
        scores: Iterable[float],
        classification: bool = True,
    ) -> None:
        """Count one answer's rows, its classes (classification) and its scores.

        A regression model's predictions are not counted by value: every distinct
        number would become a label (unbounded series); the score histogram has them.
        """
        rows = 0
        if classification:
            counts: dict[str, int] = {}
            for p in predictions:
                key = str(p)[:50]
                counts[key] = counts.get(key, 0) + 1
            for key, n in counts.items():
                self.child(self.predictions, version, key).inc(n)
            rows = sum(counts.values())
        else:
            rows = sum(1 for _ in predictions)
        histogram = self.child(self.scores, version)
        for s in scores:
            histogram.observe(s)
        self.child(self.rows, version).inc(rows)


def endpoint_of(path: str) -> str:
    """The metric label for a request path."""
    if path.startswith("/v2/models/"):
        return "/v2/models/{name}/infer" if path.endswith("/infer") else "/v2/models/{name}"
    return path if path in ROUTES else "other"


class Observed:
    """ASGI middleware: every answer counted and timed, by endpoint, status and version."""

    def __init__(self, app: Any, metrics: Metrics, version_of: Any) -> None:
        self.app, self.metrics, self.version_of = app, metrics, version_of

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def observed_send(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            endpoint = endpoint_of(scope.get("path", ""))
            m = self.metrics
            m.child(m.latency, endpoint).observe(time.perf_counter() - started)
            m.child(m.requests, endpoint, str(status), self.version_of()).inc()
            if status >= 400:
                kind = ERROR_KINDS.get(status, "internal" if status >= 500 else "client")
                m.child(m.errors, kind).inc()


@dataclass(frozen=True)
class Key:
    """A key the server accepts: its name, SHA-256 and scopes (never the key itself)."""

    name: str
    sha256: str
    scopes: frozenset[str]


def load_keys(configured: Iterable[Any]) -> list[Key]:
    """Keys from keel.yaml's ``serving.api_keys`` plus ``KEEL_API_KEYS`` (same JSON form).

    Raises
    ------
    ValueError
        When ``KEEL_API_KEYS`` is not a JSON list of ``{name, sha256, scopes}``.
    """
    keys = [Key(k.name, k.sha256, frozenset(k.scopes)) for k in configured]
    raw = os.environ.get(API_KEYS_ENV, "").strip()
    if raw:
        try:
            items = json.loads(raw)
            for item in items:
                digest = str(item["sha256"]).lower()
                if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                    raise ValueError("sha256 must be 64 hex digits")
                keys.append(
                    Key(str(item["name"]), digest, frozenset(item.get("scopes", ["predict"])))
                )
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(
                f"{API_KEYS_ENV}: expected a JSON list of {{name, sha256, scopes}}"
                f" (as `keel apikey` prints): {exc}"
            ) from exc
    return keys


def hash_key(key: str) -> str:
    """The SHA-256 (hex) under which a key is stored."""
    return hashlib.sha256(key.encode()).hexdigest()


def authenticate(presented: str | None, keys: list[Key]) -> Key | None:
    """The key matching ``presented``, compared in constant time against every key."""
    if not presented:
        return None
    digest = hash_key(presented)
    found = None
    for key in keys:  # no early exit: the time does not tell which key matched
        if hmac.compare_digest(digest, key.sha256):
            found = key
    return found


def presented_key(headers: Any) -> str | None:
    """The key in ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``."""
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return headers.get("x-api-key") or None


__all__ = [
    "API_KEYS_ENV",
    "Key",
    "Metrics",
    "Observed",
    "authenticate",
    "endpoint_of",
    "hash_key",
    "load_keys",
    "presented_key",
]
