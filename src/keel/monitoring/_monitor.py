"""Windows over the prediction log: drift, skew, performance and fairness over time.

The log's rows (one per predicted row: time, model version, inputs, prediction, score,
latency and, once ``/feedback`` sent it, the label) are cut into windows — the last N
rows at a time, or calendar hours/days (UTC) — and each window is compared with the
model package's reference: feature drift (the drift report), prediction drift (the
model's outputs on the test rows at training time), unseen categories, latency, and,
where labels arrived, performance (concept drift) and fairness per group (bias
emergence). Training-serving skew is the same comparison over every row served.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from keel.monitoring._drift import DriftThresholds, drift_report
from keel.monitoring._reference import CategoricalReference, DriftReference, NumericReference
from keel.tasks import get_task

MIN_GROUP_ROWS = 20  # a group smaller than this is shown, not compared
SECONDS = {"hour": 3600, "day": 86400}


@dataclass
class Window:
    """One window's numbers (``metrics`` keyed like alert rules' ``metric``)."""

    index: int
    start: float
    end: float
    rows: int
    complete: bool
    judged: bool  # enough rows to judge (monitoring.min_rows)
    metrics: dict[str, float] = field(default_factory=dict)
    drift: dict[str, Any] = field(default_factory=dict)
    prediction_drift: dict[str, Any] = field(default_factory=dict)
    performance: dict[str, Any] = field(default_factory=dict)
    fairness: dict[str, Any] = field(default_factory=dict)
    prediction_share: dict[str, float] = field(default_factory=dict)
    # what stays the same for this window as the log grows: its ordinal for windows of
    # N rows, the start of its hour/day for calendar windows (alert state uses it)
    mark: float = 0.0

    @property
    def label(self) -> str:
        """``2026-12-02 14:00 → 15:00 UTC`` style."""
        return f"{_stamp(self.start)} → {_stamp(self.end)}"


MONITORING_REFERENCE = "monitoring_reference.json"
"""The package document a family's monitoring windows are judged against."""


@dataclass
class MonitorReport:
    """Every window of one model version's log, and the skew over all of it."""

    model: dict[str, Any]
    window: str | int
    rows: int
    windows: list[Window]
    skew: dict[str, Any]
    alerts: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "model": self.model,
            "window": self.window,
            "rows": self.rows,
            "windows": [{**asdict(w), "label": w.label} for w in self.windows],
            "skew": self.skew,
            "alerts": self.alerts,
            "notes": self.notes,
        }


def _stamp(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + " UTC"


def log_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The prediction log's rows (``read_log``'s form) as one table, oldest first."""
    if not rows:
        return pd.DataFrame(
            columns=["time", "model_version", "inputs", "prediction", "score", "latency_ms"]
        )
    frame = pd.DataFrame.from_records(rows)
    return frame.sort_values("time", kind="stable").reset_index(drop=True)


def cut_windows(times: np.ndarray, window: str | int, now: float) -> list[tuple[int, int, bool]]:
    """``(first, stop, complete)`` row ranges of ``times`` (sorted) per window."""
    n = len(times)
    if n == 0:
        return []
    if isinstance(window, int):
        return [(i, min(i + window, n), i + window <= n) for i in range(0, n, window)]
    width = SECONDS[window]
    buckets = np.floor(times / width).astype(np.int64)
    edges = np.flatnonzero(np.diff(buckets)) + 1
    starts = np.concatenate(([0], edges))
    stops = np.concatenate((edges, [n]))
    return [
        (int(a), int(b), (buckets[a] + 1) * width <= now)
        for a, b in zip(starts, stops, strict=True)
    ]


def empty_windows(
    log: pd.DataFrame, window: str | int, min_rows: int, now: float
) -> list[tuple[Window, slice]]:
    """Each window of ``log`` (sorted by time) without numbers yet, and its rows."""
    times = log["time"].to_numpy(float) if len(log) else np.array([])
    out = []
    for index, (first, stop, complete) in enumerate(cut_windows(times, window, now)):
        found = Window(
            index=index,
            start=float(times[first]),
            end=float(times[stop - 1]),
            rows=stop - first,
            complete=complete,
            judged=stop - first >= min_rows,
            mark=float(index)
            if isinstance(window, int)
            else float(times[first] // SECONDS[window] * SECONDS[window]),
        )
        out.append((found, slice(first, stop)))
    return out


def monitor(
    log: pd.DataFrame,
    features: DriftReference,
    outputs: DriftReference,
    meta: dict[str, Any],
    *,
    window: str | int = "day",
    min_rows: int = 30,
    thresholds: DriftThresholds | None = None,
    now: float | None = None,
) -> MonitorReport:
    """Windows of ``log`` (one model version's rows) against the package's reference.

    ``meta`` is the package's Keel metadata (task, positive_class, sensitive_features);
    ``features`` and ``outputs`` are its drift reference (``drift_reference.json``).
    The same computation as :func:`monitor_chunks` with the whole log as one chunk.
    """
    return monitor_chunks(
        [log],
        features,
        outputs,
        meta,
        window=window,
        min_rows=min_rows,
        thresholds=thresholds,
        now=now,
    )


class _Window:
    """What one window needs, gathered chunk by chunk: mergeable counts, labelled rows.

    Memory: the distinct values of each feature (bounded), the counts per group, and
    the labelled rows' prediction, label and score — never the window's inputs.
    """

    def __init__(self, index: int, key: int, mark: float, start: float) -> None:
        self.index, self.key, self.mark, self.start, self.end = index, key, mark, start, start
        self.rows = self.unseen = 0
        self.inputs: DriftReference | None = None
        self.outputs: DriftReference | None = None
        self.latency: list[np.ndarray] = []
        self.predicted: dict[str, int] = {}
        self.labelled: list[pd.DataFrame] = []
        self.groups: dict[tuple[str, str], list[int]] = {}

    def add(
        self,
        part: pd.DataFrame,
        inputs: pd.DataFrame,
        checked: DriftReference,
        output_kinds: dict[str, str],
        meta: dict[str, Any],
    ) -> None:
        from keel.monitoring._chunks import chunk_reference

        self.rows += len(part)
        self.end = float(part["time"].iloc[-1])
        self.latency.append(part["latency_ms"].to_numpy(float))
        self.unseen += round(_unseen_share(inputs, checked) * len(inputs))
        kinds = {
            n: "numeric" if isinstance(r, NumericReference) else "categorical"
            for n, r in checked.columns.items()
        }
        if kinds:
            piece = DriftReference.from_dict(chunk_reference(inputs, kinds))
            self.inputs = piece if self.inputs is None else self.inputs.merge(piece)
        served = pd.DataFrame(
            {
                "prediction": part["prediction"].astype(str),
                "score": pd.to_numeric(part["score"], errors="coerce"),
            }
        )
        if output_kinds:
            piece = DriftReference.from_dict(chunk_reference(served, output_kinds))
            self.outputs = piece if self.outputs is None else self.outputs.merge(piece)
        for key, n in served["prediction"].value_counts().items():
            self.predicted[str(key)] = self.predicted.get(str(key), 0) + int(n)
        has_label = part["label"].notna() if "label" in part else pd.Series(False, index=part.index)
        if has_label.any():
            kept = part.loc[has_label, ["prediction", "label", "score"]]
            # packed arrays, not one Python object per value: objects kept across pages
            # would pin the allocator's arenas and grow memory with the window
            self.labelled.append(pd.DataFrame({c: _packed(kept[c]) for c in kept.columns}))
        positive = meta.get("positive_class")
        if not get_task(meta.get("task")).thresholded:
            return
        selected = (part["prediction"].astype(str) == str(positive)).to_numpy()
        correct = (
            (part["prediction"].astype(str) == part["label"].astype(str)).to_numpy()
            if "label" in part
            else np.zeros(len(part), bool)
        )
        marked = has_label.to_numpy()
        for name in meta.get("sensitive_features") or []:
            if name not in inputs.columns:
                continue
            groups = _groups(inputs[name], checked.columns.get(name))
            table = pd.DataFrame(
                {
                    "group": groups,
                    "selected": selected,
                    "labelled": marked,
                    "correct": correct & marked,
                }
            )
            for group, rows in table.groupby("group", sort=True):
                entry = self.groups.setdefault((name, str(group)), [0, 0, 0, 0])
                entry[0] += len(rows)
                entry[1] += int(rows["selected"].sum())
                entry[2] += int(rows["labelled"].sum())
                entry[3] += int(rows["correct"].sum())


def monitor_chunks(
    chunks: Any,
    features: DriftReference,
    outputs: DriftReference,
    meta: dict[str, Any],
    *,
    window: str | int = "day",
    min_rows: int = 30,
    thresholds: DriftThresholds | None = None,
    now: float | None = None,
) -> MonitorReport:
    """:func:`monitor` over a log read in chunks (time order): memory stays flat.

    Each window keeps mergeable references of its inputs and outputs (distinct values
    and counts, as the drift reference does), its latencies, counts per sensitive group
    and its labelled rows; the skew merges every window's reference. Drift, prediction
    drift, latency, unseen share, performance and fairness are those of the whole-log
    computation (tested equal).
    """
    thresholds = thresholds or DriftThresholds(correction="holm")  # as monitoring's default
    now = time.time() if now is None else now
    model = {"name": meta.get("name"), "version": meta.get("version"), "task": meta.get("task")}
    notes: list[str] = []
    output_kinds = {
        n: "numeric" if isinstance(r, NumericReference) else "categorical"
        for n, r in outputs.columns.items()
    }
    windows: list[Window] = []
    current: _Window | None = None
    checked: DriftReference | None = None
    merged: DriftReference | None = None  # every window's inputs, for the skew
    total = unseen = 0

    def close(state: _Window) -> None:
        """Finish a window as soon as the next begins: only one is held at a time."""
        nonlocal merged, unseen
        windows.append(_finish(state, window, min_rows, now, checked, outputs, meta, thresholds))
        if state.inputs is not None:
            merged = state.inputs if merged is None else merged.merge(state.inputs)
        unseen += state.unseen

    for chunk in chunks:
        if not len(chunk):
            continue
        chunk = chunk.sort_values("time", kind="stable").reset_index(drop=True)
        inputs = _inputs(chunk, features)
        if checked is None:
            missing = [c for c in features.columns if c not in inputs.columns]
            if missing:
                notes.append(
                    f"{len(missing)} feature(s) not in the logged inputs (dropped or redacted"
                    f" by serving.redact): {', '.join(missing[:8])}; they are not monitored"
                )
            checked = DriftReference(
                {k: v for k, v in features.columns.items() if k in inputs.columns},
                features.rows,
            )
        for name in checked.columns:
            if name not in inputs.columns:
                inputs[name] = None
        times = chunk["time"].to_numpy(float)
        if isinstance(window, int):
            keys = (np.arange(total, total + len(chunk)) // window).astype(np.int64)
        else:
            keys = np.floor(times / SECONDS[window]).astype(np.int64)
        edges = np.flatnonzero(np.diff(keys)) + 1
        for a, b in zip(
            np.concatenate(([0], edges)), np.concatenate((edges, [len(chunk)])), strict=True
        ):
            key = int(keys[a])
            if current is None or current.key != key:
                if current is not None:
                    close(current)
                mark = float(key) if isinstance(window, int) else float(key * SECONDS[window])
                current = _Window(len(windows), key, mark, float(times[a]))
            current.add(chunk.iloc[a:b], inputs.iloc[a:b], checked, output_kinds, meta)
        total += len(chunk)
    if current is not None:
        close(current)
    skew: dict[str, Any] = {}
    if total and checked is not None and checked.columns and merged is not None:
        whole = drift_report(checked, merged, thresholds=thresholds).to_dict()
        skew = {
            "rows": total,
            "drifted": whole["drifted"],
            "drifted_columns": whole["drifted_columns"],
            "columns": _brief(whole["columns"]),
            "unseen_share": unseen / total,
        }
    return MonitorReport(model, window, total, windows, skew, notes=notes)


def _finish(
    state: _Window,
    window: str | int,
    min_rows: int,
    now: float,
    features: DriftReference | None,
    outputs: DriftReference,
    meta: dict[str, Any],
    thresholds: DriftThresholds,
) -> Window:
    """One window's sections and ``metrics`` from what was gathered."""
    if isinstance(window, int):
        complete = state.rows >= window
    else:
        complete = state.mark + SECONDS[window] <= now
    found = Window(
        index=state.index,
        start=state.start,
        end=state.end,
        rows=state.rows,
        complete=complete,
        judged=state.rows >= min_rows,
        mark=state.mark,
    )
    m = found.metrics
    m["rows"] = float(found.rows)
    latency = np.concatenate(state.latency) if state.latency else np.array([])
    if len(latency):
        m["latency_p50_ms"] = float(np.percentile(latency, 50))
        m["latency_p95_ms"] = float(np.percentile(latency, 95))
    m["unseen_share"] = state.unseen / state.rows if state.rows else 0.0
    if get_task(meta.get("task")).labelled_classes:
        shares = pd.Series(state.predicted, dtype=float)
        shares = (shares / shares.sum()).sort_values(ascending=False, kind="stable")
        found.prediction_share = {str(k): round(float(v), 6) for k, v in shares.head(15).items()}
    if not found.judged:
        return found
    if features is not None and features.columns and state.inputs is not None:
        report = drift_report(features, state.inputs, thresholds=thresholds).to_dict()
        found.drift = {
            "drifted": report["drifted"],
            "drifted_columns": report["drifted_columns"],
            "share": report["share"],
            "columns": _brief(report["columns"]),
        }
        m["dataset_drift"] = float(report["drifted"])
        m["drift_share"] = float(report["share"])
        m["max_psi"] = max(float(c["psi"]) for c in report["columns"])
    if state.outputs is not None:
        shared = [c for c, ref in state.outputs.columns.items() if ref.rows]
        if shared:
            report = drift_report(outputs, state.outputs, shared, thresholds=thresholds).to_dict()
            found.prediction_drift = {
                "drifted": bool(report["drifted_columns"]),
                "columns": _brief(report["columns"]),
            }
            m["prediction_drift"] = float(bool(report["drifted_columns"]))
            m["prediction_psi"] = max(float(c["psi"]) for c in report["columns"])
    _performance(found, state, meta)
    return found


def _inputs(log: pd.DataFrame, features: DriftReference) -> pd.DataFrame:
    """The logged inputs as a table, each column typed like its reference."""
    if not len(log):
        return pd.DataFrame()
    frame = pd.DataFrame.from_records(
        [row if isinstance(row, dict) else {} for row in log["inputs"]]
    )
    frame.index = log.index
    for name, ref in features.columns.items():
        if name in frame.columns and isinstance(ref, NumericReference):
            frame[name] = pd.to_numeric(frame[name], errors="coerce")
    return frame


def _brief(columns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A drift report's columns without their plot data."""
    keep = ("column", "kind", "test", "statistic", "p_value", "psi", "jensen_shannon")
    return [
        {
            **{k: c[k] for k in keep},
            "wasserstein_normalized": c.get("wasserstein_normalized"),
            "drifted": c["drifted"],
            "flags": c["flags"],
            "unseen": sum(c.get("unseen_categories", {}).values()),
        }
        for c in columns
    ]


def _fill(
    found: Window,
    part: pd.DataFrame,
    inputs: pd.DataFrame,
    features: DriftReference,
    outputs: DriftReference,
    meta: dict[str, Any],
    thresholds: DriftThresholds,
) -> None:
    """Compute one window's sections and its ``metrics``."""
    m = found.metrics
    m["rows"] = float(found.rows)
    latency = part["latency_ms"].to_numpy(float)
    if len(latency):
        m["latency_p50_ms"] = float(np.percentile(latency, 50))
        m["latency_p95_ms"] = float(np.percentile(latency, 95))
    m["unseen_share"] = _unseen_share(inputs, features)
    if get_task(meta.get("task")).labelled_classes:
        shares = part["prediction"].astype(str).value_counts(normalize=True)
        found.prediction_share = {str(k): round(float(v), 6) for k, v in shares.head(15).items()}
    if not found.judged:
        return
    if features.columns:
        report = drift_report(features, inputs, thresholds=thresholds).to_dict()
        found.drift = {
            "drifted": report["drifted"],
            "drifted_columns": report["drifted_columns"],
            "share": report["share"],
            "columns": _brief(report["columns"]),
        }
        m["dataset_drift"] = float(report["drifted"])
        m["drift_share"] = float(report["share"])
        m["max_psi"] = max(float(c["psi"]) for c in report["columns"])
    served = pd.DataFrame(
        {
            "prediction": part["prediction"].astype(str),
            "score": pd.to_numeric(part["score"], errors="coerce"),
        }
    )
    shared = [c for c in outputs.columns if served[c].notna().any()]
    if shared:
        report = drift_report(outputs, served, shared, thresholds=thresholds).to_dict()
        found.prediction_drift = {
            "drifted": bool(report["drifted_columns"]),
            "columns": _brief(report["columns"]),
        }
        m["prediction_drift"] = float(bool(report["drifted_columns"]))
        m["prediction_psi"] = max(float(c["psi"]) for c in report["columns"])
    _performance(found, part, inputs, meta, features)


def _unseen_share(inputs: pd.DataFrame, features: DriftReference) -> float:
    """Share of rows with a category the training data never had."""
    if not len(inputs):
        return 0.0
    unseen = np.zeros(len(inputs), dtype=bool)
    for name, ref in features.columns.items():
        if isinstance(ref, CategoricalReference) and name in inputs.columns:
            values = inputs[name].astype("string").fillna("(missing)")
            unseen |= ~values.isin(list(ref.counts)).to_numpy()
    return float(unseen.mean())


def _packed(values: pd.Series) -> Any:
    """A column as one contiguous array: float64, fixed-width text, or objects if mixed."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.to_numpy(dtype=float, na_value=np.nan)
    if all(isinstance(v, str) for v in values):
        return np.array(values.tolist(), dtype=str)
    return values.to_numpy(dtype=object)


def _performance(found: Window, state: _Window, meta: dict[str, Any]) -> None:
    """Metrics on the labelled rows, and fairness per sensitive feature's groups."""
    task = meta.get("task")
    positive = meta.get("positive_class")
    labelled = (
        pd.concat(state.labelled, ignore_index=True)
        if state.labelled
        else pd.DataFrame(columns=["prediction", "label", "score"])
    )
    m = found.metrics
    m["labelled_rows"] = float(len(labelled))
    kind = get_task(task)
    if len(labelled) >= max(1, min(found.rows, 10)):
        scores = pd.to_numeric(labelled["score"], errors="coerce")
        m.update(kind.live_performance(labelled["label"], labelled["prediction"], scores, positive))
        found.performance = {
            k: m[k] for k in ("accuracy", "balanced_accuracy", "roc_auc", "mae", "rmse") if k in m
        }
        found.performance["labelled_rows"] = len(labelled)
    if not kind.thresholded:  # selection rates need decisions on a positive class
        return
    dp, acc = [], []
    for name in meta.get("sensitive_features") or []:
        keys = sorted(g for n, g in state.groups if n == name)
        if not keys:
            continue
        per_group = {}
        for group in keys:
            rows, selected, marked, correct = state.groups[(name, group)]
            entry: dict[str, Any] = {"rows": rows, "selection_rate": selected / rows}
            if marked:
                entry["accuracy"] = correct / marked
                entry["labelled_rows"] = marked
            per_group[group] = entry
        found.fairness[name] = per_group
        big = [g for g in per_group.values() if g["rows"] >= MIN_GROUP_ROWS]
        if len(big) >= 2:
            rates = [g["selection_rate"] for g in big]
            dp.append(max(rates) - min(rates))
        judged = [
            g["accuracy"] for g in per_group.values() if g.get("labelled_rows", 0) >= MIN_GROUP_ROWS
        ]
        if len(judged) >= 2:
            acc.append(max(judged) - min(judged))
    if dp:
        m["demographic_parity_difference"] = max(dp)
    if acc:
        m["accuracy_difference"] = max(acc)


def _groups(values: pd.Series, ref: Any) -> np.ndarray:
    """Group labels: categories as they are; numbers in the reference's quartiles."""
    if isinstance(ref, NumericReference) and ref.rows:
        sample = ref.sample()
        edges = np.unique(np.quantile(sample, [0.25, 0.5, 0.75]))
        numbers = pd.to_numeric(values, errors="coerce").to_numpy(float)
        index = np.searchsorted(edges, numbers, side="right")
        labels = [f"< {edges[0]:g}"] + [f"≥ {e:g}" for e in edges]
        return np.array(
            [
                labels[i] if not math.isnan(v) else "(missing)"
                for i, v in zip(index, numbers, strict=True)
            ]
        )
    return values.astype("string").fillna("(missing)").to_numpy(dtype=object)


__all__ = ["MonitorReport", "Window", "cut_windows", "log_frame", "monitor", "monitor_chunks"]
