"""`keel loadtest`: drive a running `keel serve` on loopback and measure it.

Bounded in count and time, loopback only. The rows sent are the served package's own
example rows (``keel/background.json``), so every request is one the model accepts.
The result is recorded on the served version (tag ``keel.loadtest``): it is the
evidence of the "tested under load" gate and the card's latency section.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from keel.errors import KeelInputError
from keel.registry import mlflow_scope

MAX_REQUESTS = 100_000
MAX_SECONDS = 600.0
LOADTEST_TAG = "keel.loadtest"


@dataclass
class LoadResult:
    """What a load test measured."""

    url: str
    model: dict[str, Any]
    requests: int
    concurrency: int
    rows_per_request: int
    seconds: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    throughput: float  # requests per second
    error_rate: float
    statuses: dict[str, int] = field(default_factory=dict)
    when: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON form (also what is recorded on the version)."""
        return asdict(self)


def _loopback(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise KeelInputError(f"URL {url!r}: give http://127.0.0.1:PORT (loopback only)")
    host = parts.hostname
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror as exc:
        raise KeelInputError(f"URL {url!r}: cannot resolve {host!r}") from exc
    if not all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses):
        raise KeelInputError(
            f"URL {url!r}: keel loadtest drives servers on this machine only (127.0.0.1,"
            " localhost, ::1)"
        )
    return host, parts.port or 80


def _get_json(host: str, port: int, path: str, headers: dict[str, str]) -> dict[str, Any]:
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request("GET", path, headers=headers)
        answer = conn.getresponse()
        body = answer.read()
        if answer.status != 200:
            raise KeelInputError(
                f"GET {path} answered {answer.status}: {body[:200].decode(errors='replace')}"
                + (" (pass --api-key)" if answer.status in (401, 403) else "")
            )
        return json.loads(body)
    except (OSError, http.client.HTTPException) as exc:
        raise KeelInputError(
            f"no Keel server at http://{host}:{port} ({type(exc).__name__}); start `keel serve`"
        ) from exc
    finally:
        conn.close()


def run_loadtest(
    url: str,
    tracking_uri: str,
    *,
    requests: int = 1_000,
    seconds: float = 30.0,
    concurrency: int = 8,
    rows: int = 1,
    api_key: str | None = None,
    progress: Any = None,
) -> LoadResult:
    """Send at most ``requests`` POST /predict (stopping after ``seconds``) and measure.

    Raises
    ------
    KeelInputError
        When the URL is not loopback, no Keel server answers there, or a bound is out
        of range.
    """
    if not 1 <= requests <= MAX_REQUESTS:
        raise KeelInputError(f"--requests must be 1..{MAX_REQUESTS}, got {requests}")
    if not 0 < seconds <= MAX_SECONDS:
        raise KeelInputError(f"--seconds must be in (0, {MAX_SECONDS:g}], got {seconds}")
    if not 1 <= concurrency <= 256:
        raise KeelInputError(f"--concurrency must be 1..256, got {concurrency}")
    if not 1 <= rows <= 10_000:
        raise KeelInputError(f"--rows must be 1..10000, got {rows}")
    host, port = _loopback(url)
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    model = _get_json(host, port, "/model", headers)
    path, payloads = _payloads(model, tracking_uri, rows)
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    statuses: list[dict[str, int]] = [{} for _ in range(concurrency)]
    issued = 0
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def take() -> int | None:
        nonlocal issued
        with lock:
            if issued >= requests or time.monotonic() >= deadline:
                return None
            issued += 1
            return issued

    def worker(k: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=60)
        try:
            while (n := take()) is not None:
                body = payloads[n % len(payloads)]
                started = time.perf_counter()
                try:
                    conn.request("POST", path, body=body, headers=headers)
                    answer = conn.getresponse()
                    answer.read()
                    status = str(answer.status)
                except (OSError, http.client.HTTPException) as exc:
                    status = type(exc).__name__
                    conn.close()
                    conn = http.client.HTTPConnection(host, port, timeout=60)
                latencies[k].append(time.perf_counter() - started)
                statuses[k][status] = statuses[k].get(status, 0) + 1
                if progress is not None and n % 50 == 0:
                    progress(n)
        finally:
            conn.close()

    began = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 120)
    elapsed = time.perf_counter() - began
    all_ms = np.array([x for part in latencies for x in part]) * 1000
    counted: dict[str, int] = {}
    for part in statuses:
        for status, n in part.items():
            counted[status] = counted.get(status, 0) + n
    done = len(all_ms)
    errors = done - counted.get("200", 0)
    p50, p95, p99 = (np.percentile(all_ms, q) if done else float("nan") for q in (50, 95, 99))
    return LoadResult(
        url=f"http://{host}:{port}",
        model={k: model.get(k) for k in ("name", "version", "alias")},
        requests=done,
        concurrency=concurrency,
        rows_per_request=rows,
        seconds=round(elapsed, 3),
        p50_ms=round(float(p50), 3),
        p95_ms=round(float(p95), 3),
        p99_ms=round(float(p99), 3),
        max_ms=round(float(all_ms.max()) if done else float("nan"), 3),
        throughput=round(done / elapsed, 1) if elapsed > 0 else 0.0,
        error_rate=round(errors / done, 6) if done else 1.0,
        statuses=counted,
        when=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )


def _payloads(model: dict[str, Any], tracking_uri: str, rows: int) -> tuple[str, list[bytes]]:
    """The route and request bodies, from the served model's family (its ``/ready``)."""
    from keel.families import FAMILIES

    return FAMILIES.of_metadata(model).loadtest_bodies(model, tracking_uri, rows)


def record_loadtest(result: LoadResult, tracking_uri: str) -> None:
    """Attach ``result`` to the tested version (tag ``keel.loadtest``)."""
    with mlflow_scope(tracking_uri) as client:
        client.set_model_version_tag(
            result.model["name"],
            result.model["version"],
            LOADTEST_TAG,
            json.dumps(result.to_dict()),
        )


__all__ = [
    "LOADTEST_TAG",
    "MAX_REQUESTS",
    "MAX_SECONDS",
    "LoadResult",
    "record_loadtest",
    "run_loadtest",
]
