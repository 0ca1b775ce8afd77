"""A/B tests of model versions over the prediction log: their state, units and analysis.

An experiment is a row of the log's ``experiments`` table; every server worker reads
the running one from there (:func:`running_experiment`), so a unit's arm — a salted
hash of its id (:func:`keel.evaluation._experiments.assign`) — is the same on every
worker and after a restart. The analysis reads what the servers logged:

- **exposure**: the rows answered inside the experiment (``predictions.experiment``),
  each with its arm and unit; a unit found in both arms is counted and left out.
- **built-in metrics** per unit: ``requests``; ``latency_ms`` (mean; lower is
  better); ``error_rate`` (requests the server refused or failed / attempts);
  ``accuracy`` (classification) or ``abs_error`` (regression) over the rows that got
  a label on ``/feedback``; ``hit_rate`` for recommenders (answers that held an item
  the user then consumed).
- **outcomes** sent on ``/feedback`` (per unit or per request id): a metric whose
  values are all 0/1 is a per-unit proportion (did the unit convert); any other is
  summed per unit (revenue). Exposed units with no outcome count as 0.
- **CUPED**: a continuous outcome metric whose units also had outcomes in the 28
  days before the start uses that pre-period sum as its covariate.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from keel.errors import KeelInputError
from keel.evaluation._experiments import (
    CHALLENGER_ARM,
    CHAMPION_ARM,
    assign,
    decide,
)
from keel.monitoring._logdb import EXPERIMENTS, FEEDBACK, OUTCOMES, PREDICTIONS, open_log

DAY = 86_400.0
PRE_PERIOD = 28 * DAY
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
METRIC = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
# metrics the server's log gives without any outcome sent; lower is better for some
BUILT_IN = ("requests", "latency_ms", "error_rate", "accuracy", "abs_error", "hit_rate")
LOWER_IS_BETTER = ("latency_ms", "error_rate", "abs_error")
RATIOS = {
    "error_rate": ("errors", "attempts"),
    "accuracy": ("correct", "labelled"),
    "abs_error": ("error_sum", "labelled"),
    "hit_rate": ("hits", "requests"),
}
DATA_COLUMN = {"accuracy": "labelled", "abs_error": "labelled", "hit_rate": "hits"}
DEFAULT_GUARDRAILS = {"latency_ms": 10.0, "error_rate": 0.01}


@dataclass(frozen=True)
class Experiment:
    """One A/B test: who is compared, how units are split, what decides it."""

    name: str
    model_name: str
    champion_version: str
    challenger_version: str
    split: float  # percent of units sent to the challenger
    unit_field: str
    salt: str
    status: str  # running | stopped | concluded
    started: float
    stopped: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None

    @property
    def share(self) -> float:
        """The challenger's share of units, 0..1."""
        return self.split / 100

    def arm_of(self, unit: Any) -> str:
        """The arm of ``unit`` (sticky: the same on every worker, request and restart)."""
        return assign(str(unit), self.salt, self.share)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (without the salt: it is not a secret, but nobody needs it)."""
        found = asdict(self)
        found.pop("salt")
        return found

    @classmethod
    def of_row(cls, row: Any) -> Experiment:
        """From a row of the ``experiments`` table."""
        m = dict(row._mapping)
        return cls(
            name=m["name"],
            model_name=m["model_name"],
            champion_version=m["champion_version"],
            challenger_version=m["challenger_version"],
            split=float(m["split"]),
            unit_field=m["unit_field"],
            salt=m["salt"],
            status=m["status"],
            started=float(m["started"]),
            stopped=m["stopped"],
            settings=json.loads(m["settings"]),
            result=json.loads(m["result"]) if m["result"] else None,
        )


NUMBERS = "numbers"
ANSWER_KINDS = ("lists", "classes", NUMBERS)
"""What an A/B test's answers are: ranked lists, classes, or numbers (``task_family``)."""
_LEGACY_KINDS = {"ranking": "lists", "classification": "classes", "regression": NUMBERS}


def answer_kind(recorded: str) -> str:
    """The answer kind an experiment records (older experiments recorded other words)."""
    kind = _LEGACY_KINDS.get(recorded, recorded)
    if kind not in ANSWER_KINDS:
        raise KeelInputError(
            f"an A/B test compares answers that are {', '.join(ANSWER_KINDS)}; got {recorded!r}"
        )
    return kind


def check_settings(settings: dict[str, Any], task_family: str) -> None:
    """Metric names, margins and alpha of an experiment; KeelInputError names the bad one."""
    metrics = settings.get("metrics") or []
    if not metrics:
        raise KeelInputError("--metric: name at least one success metric (e.g. conversion)")
    for name in [*metrics, *(settings.get("guardrails") or {})]:
        if not METRIC.match(name):
            raise KeelInputError(
                f"metric {name!r}: letters, digits and _ only, starting with a letter"
            )
    kind = answer_kind(task_family)
    wrong = {
        "lists": {"accuracy", "abs_error"},
        "classes": {"hit_rate", "abs_error"},
        "numbers": {"hit_rate", "accuracy"},
    }[kind]
    for name in [*metrics, *(settings.get("guardrails") or {})]:
        if name in wrong:
            raise KeelInputError(
                f"metric {name!r} does not exist for a model whose answers are {kind}"
            )
    for name, margin in (settings.get("guardrails") or {}).items():
        if not (isinstance(margin, int | float) and math.isfinite(margin) and margin >= 0):
            raise KeelInputError(f"--guardrail {name}: the margin must be a number >= 0")
    alpha = settings.get("alpha", 0.05)
    if not 0 < alpha < 0.5:
        raise KeelInputError(f"--alpha must be in (0, 0.5); got {alpha}")


def start_experiment(
    url: str,
    name: str,
    model_name: str,
    champion_version: str,
    challenger_version: str,
    split: float,
    unit_field: str,
    settings: dict[str, Any],
    salt: str | None = None,
) -> Experiment:
    """Record a running experiment; the servers route by it from their next poll.

    ``salt`` (default: the name and 64 random bits) seeds the assignment; give one only
    to reproduce an assignment (a simulation, a test).

    Refused (KeelInputError, nothing written) for a bad name or split, a name already
    used (a new experiment needs a new name: its salt reshuffles units), or another
    experiment running on the model.
    """
    if not NAME.match(name or ""):
        raise KeelInputError(
            f"experiment name {name!r}: 1-100 letters, digits, '.', '_' or '-' (e.g. ranker-v7)"
        )
    if not (isinstance(split, int | float) and 1 <= split <= 99):
        raise KeelInputError(f"--split is the challenger's percent of units, 1..99; got {split}")
    if str(champion_version) == str(challenger_version):
        raise KeelInputError(
            f"the challenger is version {challenger_version}, the champion itself;"
            " compare two different versions"
        )
    engine = open_log(url)
    try:
        with engine.begin() as conn:
            if conn.execute(select(EXPERIMENTS.c.name).where(EXPERIMENTS.c.name == name)).first():
                raise KeelInputError(
                    f"experiment {name!r} already exists; choose a new name (each experiment"
                    " assigns units anew)"
                )
            running = conn.execute(
                select(EXPERIMENTS.c.name).where(
                    (EXPERIMENTS.c.model_name == model_name) & (EXPERIMENTS.c.status == "running")
                )
            ).first()
            if running:
                raise KeelInputError(
                    f"experiment {running[0]!r} is already running on {model_name}: conclude"
                    f" or stop it first (`keel experiment stop {running[0]}`)"
                )
            experiment = Experiment(
                name=name,
                model_name=model_name,
                champion_version=str(champion_version),
                challenger_version=str(challenger_version),
                split=float(split),
                unit_field=unit_field,
                salt=salt or f"{name}:{secrets.token_hex(8)}",
                status="running",
                started=time.time(),
                settings=settings,
            )
            row = experiment.to_dict() | {"salt": experiment.salt}
            row["settings"] = json.dumps(settings)
            row["result"] = None
            conn.execute(EXPERIMENTS.insert().values(**row))
    finally:
        engine.dispose()
    return experiment


def get_experiment(url: str, name: str, engine: Engine | None = None) -> Experiment:
    """The experiment ``name``; KeelInputError (listing those that exist) when unknown."""
    own = engine is None
    engine = engine or open_log(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(select(EXPERIMENTS).where(EXPERIMENTS.c.name == name)).first()
            if row is None:
                known = [r[0] for r in conn.execute(select(EXPERIMENTS.c.name))]
                raise KeelInputError(
                    f"no experiment {name!r} in the prediction log"
                    + (f"; known: {', '.join(sorted(known)[:20])}" if known else "; none yet")
                )
    finally:
        if own:
            engine.dispose()
    return Experiment.of_row(row)


def list_experiments(url: str) -> list[Experiment]:
    """Every experiment in the log, oldest first."""
    engine = open_log(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(EXPERIMENTS).order_by(EXPERIMENTS.c.started)).all()
    finally:
        engine.dispose()
    return [Experiment.of_row(r) for r in rows]


def running_experiment(engine: Engine, model_name: str) -> Experiment | None:
    """The experiment running on ``model_name`` (what a server polls), or None."""
    with engine.connect() as conn:
        row = conn.execute(
            select(EXPERIMENTS).where(
                (EXPERIMENTS.c.model_name == model_name) & (EXPERIMENTS.c.status == "running")
            )
        ).first()
    return Experiment.of_row(row) if row is not None else None


def end_experiment(
    url: str, name: str, status: str = "stopped", result: dict[str, Any] | None = None
) -> Experiment:
    """Stop routing (``stopped``) or record the decision (``concluded``, with ``result``).

    Stopping needs a running experiment; concluding a running or stopped one.
    """
    engine = open_log(url)
    try:
        experiment = get_experiment(url, name, engine)
        allowed = ("running",) if status == "stopped" else ("running", "stopped")
        if experiment.status not in allowed:
            raise KeelInputError(f"experiment {name!r} is {experiment.status}; nothing to do")
        values: dict[str, Any] = {"status": status, "stopped": experiment.stopped or time.time()}
        if result is not None:
            values["result"] = json.dumps(result, default=str)
        with engine.begin() as conn:
            conn.execute(update(EXPERIMENTS).where(EXPERIMENTS.c.name == name).values(**values))
        return get_experiment(url, name, engine)
    finally:
        engine.dispose()


# --- reading what the servers logged ------------------------------------------------


@dataclass
class Logged:
    """The raw rows of one experiment: exposures, labels and outcomes (pandas frames)."""

    experiment: Experiment
    exposures: Any  # request_id, row, time, unit, arm, latency_ms, prediction, label
    outcomes: Any  # time, unit, metric, value, source (units resolved from request ids)


def read_experiment(url: str, name: str) -> Logged:
    """Everything the log holds on experiment ``name``."""
    import pandas as pd

    engine = open_log(url)
    try:
        experiment = get_experiment(url, name, engine)
        with engine.connect() as conn:
            query = (
                select(
                    PREDICTIONS.c.request_id,
                    PREDICTIONS.c.row,
                    PREDICTIONS.c.time,
                    PREDICTIONS.c.unit,
                    PREDICTIONS.c.arm,
                    PREDICTIONS.c.latency_ms,
                    PREDICTIONS.c.prediction,
                    FEEDBACK.c.label,
                )
                .join(
                    FEEDBACK,
                    (FEEDBACK.c.request_id == PREDICTIONS.c.request_id)
                    & (FEEDBACK.c.row == PREDICTIONS.c.row),
                    isouter=True,
                )
                .where(PREDICTIONS.c.experiment == name)
            )
            exposures = pd.DataFrame(
                conn.execute(query).all(),
                columns=[
                    "request_id",
                    "row",
                    "time",
                    "unit",
                    "arm",
                    "latency_ms",
                    "prediction",
                    "label",
                ],
            )
            since = experiment.started - PRE_PERIOD
            outcomes = pd.DataFrame(
                conn.execute(
                    select(
                        OUTCOMES.c.time,
                        OUTCOMES.c.unit,
                        OUTCOMES.c.request_id,
                        OUTCOMES.c.metric,
                        OUTCOMES.c.value,
                        OUTCOMES.c.source,
                        OUTCOMES.c.experiment,
                    ).where(OUTCOMES.c.time >= since)
                ).all(),
                columns=["time", "unit", "request_id", "metric", "value", "source", "experiment"],
            )
    finally:
        engine.dispose()
    # outcomes sent by request id belong to that request's unit
    owner = dict(zip(exposures["request_id"], exposures["unit"], strict=False))
    if len(outcomes):
        missing = outcomes["unit"].isna() & outcomes["request_id"].notna()
        outcomes.loc[missing, "unit"] = outcomes.loc[missing, "request_id"].map(owner)
        outcomes = outcomes[outcomes["unit"].notna()]
        server = outcomes["source"] == "server"
        outcomes = outcomes[~server | (outcomes["experiment"] == name)]
    return Logged(experiment, exposures, outcomes)


def unit_table(logged: Logged, until: float | None = None) -> Any:
    """One row per (unit, arm) up to ``until``: built-in metrics and outcome metrics."""
    import numpy as np
    import pandas as pd

    experiment, exposures, outcomes = logged.experiment, logged.exposures, logged.outcomes
    if until is not None:
        exposures = exposures[exposures["time"] <= until]
    exposures = exposures[exposures["unit"].notna() & exposures["arm"].notna()]
    requests = exposures.drop_duplicates("request_id")
    table = requests.groupby(["unit", "arm"]).agg(
        requests=("request_id", "size"), latency_ms=("latency_ms", "mean")
    )
    labelled = exposures[exposures["label"].notna()]
    if len(labelled):
        prediction = labelled["prediction"].map(json.loads)
        label = labelled["label"].map(json.loads)
        per_row = pd.DataFrame({"unit": labelled["unit"], "arm": labelled["arm"]})
        if _is_lists(prediction):  # recommender: the answer held a consumed item
            per_row["hits"] = [
                float(bool(set(map(str, p)) & set(map(str, lab or []))))
                for p, lab in zip(prediction, label, strict=True)
            ]
            table = table.join(per_row.groupby(["unit", "arm"])[["hits"]].sum())
        else:
            numeric = pd.to_numeric(prediction, errors="coerce")
            truth = pd.to_numeric(label, errors="coerce")
            kind = experiment.settings.get("task_family")
            regression = (
                answer_kind(kind) == NUMBERS
                if kind
                else numeric.notna().all() and truth.notna().all() and not _labels(prediction)
            )
            if regression:
                per_row["error_sum"] = (numeric - truth).abs().to_numpy()
            else:
                per_row["correct"] = (prediction.map(str) == label.map(str)).astype(float)
            per_row["labelled"] = 1.0
            table = table.join(per_row.groupby(["unit", "arm"]).sum())
    table = table.reset_index()
    after = outcomes[outcomes["time"] >= experiment.started] if len(outcomes) else outcomes
    if until is not None and len(after):
        after = after[after["time"] <= until]
    errors = (
        after[(after["source"] == "server") & (after["metric"] == "errors")]
        if len(after)
        else after
    )
    table["errors"] = (
        table["unit"].map(errors.groupby("unit")["value"].sum()).fillna(0.0) if len(errors) else 0.0
    )
    table["attempts"] = table["requests"] + table["errors"]
    client = after[after["source"] == "client"] if len(after) else after
    before = (
        outcomes[(outcomes["time"] < experiment.started) & (outcomes["source"] == "client")]
        if len(outcomes)
        else outcomes
    )
    for metric, values in client.groupby("metric") if len(client) else ():
        binary = bool(values["value"].isin([0.0, 1.0]).all())
        per_unit = values.groupby("unit")["value"].agg("max" if binary else "sum")
        table[metric] = table["unit"].map(per_unit).fillna(0.0)
        if not binary and len(before):
            pre = before[before["metric"] == metric].groupby("unit")["value"].sum()
            if len(pre):
                table[f"{metric}__pre"] = table["unit"].map(pre).fillna(0.0)
    for column in ("hits", "correct", "labelled", "error_sum"):
        if column in table:
            table[column] = table[column].fillna(0.0)
    table["requests"] = table["requests"].astype(float)
    return table.replace([np.inf, -np.inf], np.nan)


def _is_lists(values: Any) -> bool:
    return bool(len(values)) and all(isinstance(v, list) for v in values.head(20))


def _labels(values: Any) -> bool:
    return any(isinstance(v, str | bool) for v in values.head(20))


def analyze(logged: Logged, until: float | None = None) -> dict[str, Any]:
    """The analysis of ``logged`` up to ``until``: counts, effects, SRM and the decision.

    Raises KeelInputError naming a metric that has no data, or when an arm has no
    unit yet.
    """
    experiment = logged.experiment
    settings = experiment.settings
    table = unit_table(logged, until)
    success = list(settings.get("metrics") or [])
    guardrails = dict(settings.get("guardrails") or {})
    counts = _counts(table, logged, until)
    if min(counts["units"].values()) < 2:
        raise KeelInputError(
            f"experiment {experiment.name!r}: {counts['units'][CHAMPION_ARM]} champion and"
            f" {counts['units'][CHALLENGER_ARM]} challenger unit(s) so far; an analysis needs"
            " at least 2 in each arm (are requests sending the unit field"
            f" {experiment.unit_field!r}?)"
        )
    for metric in [*success, *guardrails]:
        if metric in ("requests", "latency_ms", "error_rate"):
            continue  # the server's own: every exposed unit has them
        if DATA_COLUMN.get(metric, metric) not in table:
            how = (
                "POST /feedback with the labels of answered requests"
                if metric in DATA_COLUMN
                else 'POST /feedback {"outcomes": [{"unit": ..., "metric": "'
                + metric
                + '", "value": 1}]}'
            )
            raise KeelInputError(
                f"metric {metric!r} has no data in experiment {experiment.name!r} yet: {how}"
            )
    covariates = {m: f"{m}__pre" for m in success if f"{m}__pre" in table}
    lower = tuple(m for m in [*success, *guardrails] if m in LOWER_IS_BETTER)
    try:
        verdict = decide(
            table,
            success,
            treatment_share=experiment.share,
            planned_per_arm=settings.get("planned_per_arm"),
            alpha=settings.get("alpha", 0.05),
            guardrails=guardrails,
            lower_is_better=lower,
            covariates=covariates,
            ratios={m: RATIOS[m] for m in [*success, *guardrails] if m in RATIOS},
        )
    except ValueError as exc:
        raise KeelInputError(f"experiment {experiment.name!r}: {exc}") from None
    return _plain(
        {
            "experiment": experiment.to_dict(),
            "at": until if until is not None else time.time(),
            "counts": counts,
            **verdict.to_dict(),
        }
    )


def _plain(value: Any) -> Any:
    """JSON-safe: NumPy numbers as Python ones, NaN and infinities as None."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _counts(table: Any, logged: Logged, until: float | None) -> dict[str, Any]:
    experiment = logged.experiment
    arms = table.groupby("unit")["arm"].nunique()
    both = set(arms[arms > 1].index)
    clean = table[~table["unit"].isin(both)]
    units = clean["arm"].value_counts()
    requests = clean.groupby("arm")["requests"].sum()
    end = until if until is not None else (experiment.stopped or time.time())
    planned = experiment.settings.get("planned_per_arm")
    smallest = int(min(units.get(CHAMPION_ARM, 0), units.get(CHALLENGER_ARM, 0)))
    return {
        "units": {a: int(units.get(a, 0)) for a in (CHAMPION_ARM, CHALLENGER_ARM)},
        "requests": {a: int(requests.get(a, 0)) for a in (CHAMPION_ARM, CHALLENGER_ARM)},
        "units_in_both_arms": len(both),
        "days": round(max(0.0, end - experiment.started) / DAY, 3),
        "planned_per_arm": planned,
        "progress": round(smallest / planned, 4) if planned else None,
    }


def status(logged: Logged) -> dict[str, Any]:
    """Counts per arm, days run and progress toward the planned sample (no statistics)."""
    table = unit_table(logged)
    return {"experiment": logged.experiment.to_dict(), "counts": _counts(table, logged, None)}


def timeline(logged: Logged, points: int = 14) -> list[dict[str, Any]]:
    """The analysis re-run at the end of each day (or of ``points`` equal steps).

    Each point: time, units per arm, the SRM p-value and, per metric, the effect and
    its interval as known then, and the running minimum of the sequential p-value.
    """
    experiment, exposures = logged.experiment, logged.exposures
    if not len(exposures):
        return []
    start, end = experiment.started, float(exposures["time"].max())
    if len(logged.outcomes):
        end = max(end, float(logged.outcomes["time"].max()))
    span = end - start
    step = DAY if span >= 2 * DAY else max(span / points, 1e-6)
    cuts = [start + step * (i + 1) for i in range(int(span // step))] + [end]
    series: list[dict[str, Any]] = []
    best: dict[str, float] = {}
    for cut in cuts[-60:]:
        try:
            found = analyze(logged, until=cut)
        except KeelInputError:
            continue
        effects = {}
        for e in found["effects"]:
            best[e["metric"]] = min(best.get(e["metric"], 1.0), e["sequential_p_value"])
            effects[e["metric"]] = {
                k: e[k] for k in ("absolute", "low", "high", "p_value", "control", "treatment")
            } | {"sequential_p_value": best[e["metric"]]}
        series.append(
            {
                "time": cut,
                "units": found["counts"]["units"],
                "srm_p_value": found["srm"]["p_value"],
                "effects": effects,
            }
        )
    return series


__all__ = [
    "BUILT_IN",
    "DEFAULT_GUARDRAILS",
    "LOWER_IS_BETTER",
    "Experiment",
    "Logged",
    "analyze",
    "check_settings",
    "end_experiment",
    "get_experiment",
    "list_experiments",
    "read_experiment",
    "running_experiment",
    "start_experiment",
    "status",
    "timeline",
    "unit_table",
]
