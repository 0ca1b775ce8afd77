"""`keel build NAME@ALIAS`: deployment files for one registered model."""

from __future__ import annotations

import json
import re
from pathlib import Path

from keel._extras import requirement
from keel.cli._scaffold import DOCKERFILE, KSERVE
from keel.errors import KeelInputError
from keel.pipeline import atomic_write

K8S = """\
# Kubernetes Deployment + Service for {model} (version {version} when built).
# The pods follow {model} in the registry: `keel promote` / `keel rollback` swap the
# model in place, without a rollout.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {k8s_name}
  labels: {{app: {k8s_name}, keel.model: {k8s_model}, keel.version: "{version}"}}
spec:
  replicas: 2
  selector:
    matchLabels: {{app: {k8s_name}}}
  template:
    metadata:
      labels: {{app: {k8s_name}}}
      annotations:
        prometheus.io/scrape: "true"
        prometheus.io/port: "8000"
        prometheus.io/path: /metrics
    spec:
      securityContext: {{runAsNonRoot: true}}
      containers:
        - name: keel
          image: registry.example.org/{k8s_name}-serve:latest
          command: ["keel"]
          args: ["serve", {model_args}"--host", "0.0.0.0", "--port", "8000"]
          ports:
            - {{containerPort: 8000, name: http}}
          env:
            - name: MLFLOW_TRACKING_URI
              value: http://mlflow.mlflow.svc.cluster.local:5000
          readinessProbe:
            httpGet: {{path: /ready, port: http}}
            periodSeconds: 5
          livenessProbe:
            httpGet: {{path: /health, port: http}}
            periodSeconds: 10
          resources:
            requests: {{cpu: "1", memory: 1Gi}}
            limits: {{cpu: "1", memory: 2Gi}}
---
apiVersion: v1
kind: Service
metadata:
  name: {k8s_name}
  labels: {{app: {k8s_name}}}
spec:
  selector: {{app: {k8s_name}}}
  ports:
    - {{name: http, port: 80, targetPort: http}}
"""

README = """\
# Deployment files for {model}

Built by `keel build {model}` from version {version}.

* `Dockerfile`: `keel serve --model {model}` on port 8000, with `{requirement}` from
  the package index (the Keel that wrote these files). Copy the project's `keel.yaml`
  beside it.
* `kserve.yaml`: a KServe InferenceService with that image as a custom predictor
  (it also speaks the Open Inference Protocol v2 under /v2).
* `kubernetes.yaml`: a Deployment (2 replicas, readiness on /ready, liveness on
  /health, Prometheus scrape annotations) and a Service.

Set `MLFLOW_TRACKING_URI` to your registry. The model is read from the registry at
start and followed: promotions and rollbacks reach the pods without a rollout.
"""


def _panel(title: str, exprs: list[tuple[str, str]], unit: str, x: int, y: int) -> dict:
    """A Grafana time-series panel of Prometheus queries (expr, legend)."""
    return {
        "type": "timeseries",
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {"expr": expr, "legendFormat": legend, "refId": chr(ord("A") + i)}
            for i, (expr, legend) in enumerate(exprs)
        ],
    }


def _traffic_panels(job: str, predict: str) -> list[dict]:
    """Requests, /predict latency, errors and the error rate."""
    return [
        _panel(
            "Requests per second by endpoint and status",
            [
                (
                    f"sum by (endpoint, status) (rate(keel_requests_total{job}[5m]))",
                    "{{endpoint}} {{status}}",
                )
            ],
            "reqps",
            0,
            0,
        ),
        _panel(
            "Latency of /predict (seconds)",
            [
                (
                    f"histogram_quantile({q}, sum by (le)"
                    f" (rate(keel_request_seconds_bucket{predict}[5m])))",
                    f"p{int(q * 100)}",
                )
                for q in (0.5, 0.95, 0.99)
            ],
            "s",
            12,
            0,
        ),
        _panel(
            "Errors per second by kind",
            [(f"sum by (kind) (rate(keel_errors_total{job}[5m]))", "{{kind}}")],
            "reqps",
            0,
            8,
        ),
        _panel(
            "Error rate (share of requests)",
            [
                (
                    f"sum(rate(keel_errors_total{job}[5m]))"
                    f" / sum(rate(keel_requests_total{job}[5m]))",
                    "errors / requests",
                )
            ],
            "percentunit",
            12,
            8,
        ),
    ]


def _model_panels(job: str) -> list[dict]:
    """Predictions by class, the score's spread, the version served, routing and swaps."""
    return [
        _panel(
            "Predictions per second by class and model version",
            [
                (
                    f"sum by (model_version, prediction) (rate(keel_predictions_total{job}[5m]))",
                    "v{{model_version}} {{prediction}}",
                )
            ],
            "short",
            0,
            16,
        ),
        _panel(
            "Prediction score: median and 90th percentile",
            [
                (
                    f"histogram_quantile({q}, sum by (le, model_version)"
                    f" (rate(keel_prediction_score_bucket{job}[15m])))",
                    f"p{int(q * 100)} v{{{{model_version}}}}",
                )
                for q in (0.5, 0.9)
            ],
            "short",
            12,
            16,
        ),
        _panel(
            "Model version served (1 = current)",
            [(f"keel_model_info{job}", "{{name}} v{{version}} {{alias}}")],
            "short",
            0,
            24,
        ),
        _panel(
            "Routing, shadow agreement and hot swaps",
            [
                (f"sum by (route) (rate(keel_routed_total{job}[5m]))", "route {{route}}"),
                (f"sum by (outcome) (rate(keel_shadow_rows_total{job}[5m]))", "shadow {{outcome}}"),
                (f"increase(keel_model_swaps_total{job}[1h])", "swaps per hour"),
            ],
            "short",
            12,
            24,
        ),
    ]


def grafana_dashboard(name: str, alias: str) -> dict:
    """A Grafana dashboard for the Prometheus metrics `keel serve` exposes at /metrics."""
    job = '{job=~"$job"}'
    predict = '{job=~"$job",endpoint="/predict"}'
    panels = [*_traffic_panels(job, predict), *_model_panels(job)]
    return {
        "title": f"Keel — {name}@{alias}",
        "uid": re.sub(r"[^a-z0-9-]+", "-", f"keel-{name}-{alias}".lower())[:40],
        "tags": ["keel", name],
        "schemaVersion": 39,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus"},
                {
                    "name": "job",
                    "type": "query",
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "query": "label_values(keel_model_info, job)",
                    "includeAll": True,
                    "multi": True,
                    "current": {"text": "All", "value": "$__all"},
                },
            ]
        },
        "panels": panels,
    }


def build_files(
    name: str,
    alias: str,
    version: str,
    folder: Path,
    force: bool = False,
    extra: str | None = None,
) -> dict[str, str]:
    """Write the deployment files of ``name@alias`` into ``folder``; return their paths.

    ``extra`` is the Keel extra the model's family needs (its image installs
    ``keel-ml[extra]``); ``None`` for a family of Keel's core.

    Raises
    ------
    KeelInputError
        When a file exists and ``force`` is false (nothing is written then), or the
        folder cannot be written.
    """
    k8s_name = re.sub(r"[^a-z0-9-]+", "-", f"{name}-{alias}".lower()).strip("-")[:50] or "model"
    model = f"{name}@{alias}"
    values = {
        "name": name,
        "model": model,
        "version": version,
        "k8s_name": k8s_name,
        "k8s_model": re.sub(r"[^A-Za-z0-9_.-]+", "-", name)[:63],
        "model_args": f'"--model", "{model}", ',
        "requirement": requirement(extra),
    }
    files = {
        "Dockerfile": DOCKERFILE.format(**values),
        "kserve.yaml": KSERVE.format(**values),
        "kubernetes.yaml": K8S.format(**values),
        "README.md": README.format(**values),
        "grafana-dashboard.json": json.dumps(grafana_dashboard(name, alias), indent=2) + "\n",
    }
    existing = [p for p in files if (folder / p).exists()]
    if existing and not force:
        raise KeelInputError(
            f"{folder}: {', '.join(existing)} already exist; pass --force to replace them"
            " or --out for another folder"
        )
    paths = {}
    for file, text in files.items():
        atomic_write(folder / file, text)  # whole file or nothing; exit 2 if unwritable
        paths[file] = str(folder / file)
    return paths


__all__ = ["build_files", "grafana_dashboard"]
