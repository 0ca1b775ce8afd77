"""``keel run``: the lifecycle graph run by the stage runner, with its hooks.

:func:`run_project` is what the CLI, ``keel monitor --retrain``, ``keel reproduce`` and
the Python API call. It builds the run context, runs the family's graph
(``Family.lifecycle()``) with the stage store under ``.keel/stages/`` and three
hooks — progress, MLflow tracking (``stage_seconds.*`` and ``stages.json`` on the
run) and failure alerts (to ``monitoring.sinks``) — and returns a :class:`RunResult`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from keel.config import ProjectConfig, Settings, resolve_settings
from keel.errors import KeelError
from keel.families import FAMILIES
from keel.pipeline._context import RunContext, with_rows
from keel.pipeline._package_stages import config_digest, git_commit
from keel.pipeline._stages import (
    RAN,
    Hooks,
    Runner,
    RunState,
    Stage,
    StageRecord,
    StageStore,
    records_document,
)

if TYPE_CHECKING:  # pandas loads with the stages that use it, not for a no-op run
    import pandas as pd

RERUN_TAG = "keel.rerun"
"""Model-version tag: the first re-run that reused this version's registration."""

Observer = Any
"""Called with ``(stage, detail)`` as stages start and report; the CLI draws progress."""


@dataclass
class RunResult:
    """What ``keel run`` did: the JSON object ``keel run --json`` prints."""

    run_id: str
    experiment_id: str
    tracking_uri: str
    model: dict[str, Any]
    task: str
    primary_metric: str
    metrics: dict[str, float]
    candidates: list[dict[str, Any]]
    data: dict[str, Any]
    assessment: dict[str, Any]
    tuning: dict[str, Any]
    reports: dict[str, str]
    # candidates asked for and not trained (name → reason and estimate)
    skipped: dict[str, Any] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    stages: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


class ProgressHook(Hooks):
    """Tells an observer which stage starts (and that it was reused)."""

    def __init__(self, observer: Observer) -> None:
        self.observer = observer

    def before_stage(self, stage: Stage, key: str) -> None:
        self.observer(stage.name, "")

    def after_stage(self, stage: Stage, record: StageRecord) -> None:
        if record.status != RAN:
            self.observer(stage.name, "reused")


class AlertHook(Hooks):
    """A failed stage sends one ``pipeline_failure`` alert to the non-log sinks."""

    def __init__(self, config: ProjectConfig) -> None:
        self.config = config

    def on_stage_error(self, stage: Stage, error: BaseException) -> None:
        from keel.monitoring import deliver, failure_alert

        # a Keel error is written for users; anything else says its kind only
        what = (
            str(error) if isinstance(error, KeelError) else f"{type(error).__name__} (see the log)"
        )
        # the terminal already shows the error: the log sink would only repeat it
        sinks = [s for s in self.config.monitoring.sinks if s.type != "log"]
        deliver([failure_alert(self.config.name, stage.name, what)], sinks, self.config.root)


class WarmUpHook(Hooks):
    """MLflow's store code loads in the background once a stage has to run.

    It loads beside the first stages that run (see :func:`keel.registry.warm_up`); a run
    with nothing to do never imports MLflow at all.
    """

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri

    def stage_runs(self, stage: Stage, key: str) -> None:
        from keel.registry import warm_up

        warm_up(self.tracking_uri)  # once per store: later calls return at once


class TrackingHook(Hooks):
    """Stage seconds and ``stages.json`` (lineage) on the run; a failed stage marks it."""

    def __init__(self, settings: Settings, context: RunContext) -> None:
        self.settings = settings
        self.context = context

    def on_stage_error(self, stage: Stage, error: BaseException) -> None:
        run_id = self.context.run_id
        if run_id:  # the run exists but lacks the evidence of later stages
            self._terminate(run_id, "FAILED")

    def after_run(self, state: RunState) -> None:
        if "run" not in state.values:
            return  # a read-only run (keel reproduce)
        registered = next(r for r in state.records if r.name == "register")
        if registered.status != RAN:
            self._record_rerun(state)
        if not state.ran:
            return  # nothing ran (an identical re-run): the run is as it was
        from keel.registry import mlflow_scope, tracking

        run_id = state.values["run"]["run_id"]
        with mlflow_scope(self.settings.tracking_uri) as client:
            for record in state.records:
                if record.status == RAN:
                    client.log_metric(run_id, f"stage_seconds.{record.name}", record.seconds)
                    for what in ("cpu_seconds", "peak_mb"):
                        value = record.resources.get(what)
                        if value is not None:
                            client.log_metric(run_id, f"stage_{what}.{record.name}", value)
            document = json.dumps(records_document(state.records), indent=1)
            tracking.log_text(document, "stages.json", run_id)
            client.set_terminated(run_id, "FINISHED")

    def _record_rerun(self, state: RunState) -> None:
        """Evidence for the ``idempotent`` gate: a re-run reused the registration.

        Written once per registration: when the version already carries the evidence for
        this register key (asked without MLflow, :mod:`keel.registry._probe`), a further
        identical re-run writes nothing, and stays fast.
        """
        from keel.registry._probe import probe_version

        run = state.values["run"]
        register = next(r.key for r in state.records if r.name == "register")
        found = probe_version(self.settings.tracking_uri, run["name"], run["version"])
        if found.exists and _rerun_key(found.tags.get(RERUN_TAG)) == register:
            return
        from keel.registry import mlflow_scope

        with mlflow_scope(self.settings.tracking_uri) as client:
            tags = client.get_model_version(run["name"], run["version"]).tags or {}
            try:
                count = int(json.loads(tags.get(RERUN_TAG, "{}")).get("count", 0))
            except (ValueError, AttributeError, TypeError):
                count = 0
            evidence = {
                "count": count + 1,
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "reused": [r.name for r in state.records if r.status != RAN],
                "ran": state.ran,
                "register_key": register,
            }
            client.set_model_version_tag(
                run["name"], run["version"], RERUN_TAG, json.dumps(evidence)
            )

    def _terminate(self, run_id: str, status: str) -> None:
        from keel.registry import mlflow_scope

        with mlflow_scope(self.settings.tracking_uri) as client:
            client.set_terminated(run_id, status)


def _rerun_key(raw: str | None) -> str | None:
    """The register key a ``keel.rerun`` tag records, if it is readable."""
    try:
        return json.loads(raw or "{}").get("register_key")
    except (ValueError, AttributeError):
        return None


def run_project(
    config: ProjectConfig,
    settings: Settings | None = None,
    observer: Observer | None = None,
    fixed_params: dict[str, dict[str, Any]] | None = None,
    record: bool = True,
    extra_rows: pd.DataFrame | None = None,
    extra_label: str = "extra rows",
    tags: dict[str, str] | None = None,
    start_from: str | None = None,
    use_cache: bool = True,
) -> RunResult:
    """Run the lifecycle once: ingest → … → register → report → card → alias.

    Every stage's outputs are stored under ``.keel/stages/<key>/``; a stage whose key
    is stored is reused, so an identical run re-runs nothing and registers nothing new,
    and a run after a failure resumes at the first stage without stored outputs.
    ``start_from`` re-runs that stage and every later one; ``use_cache=False`` runs all
    (and stores nothing). Nothing is written (no MLflow run, no snapshot) until the
    config and the data have passed every check; bad input removes what the run stored.
    ``fixed_params`` replaces tuning with known hyper-parameters per candidate (``keel
    reproduce``); ``record=False`` stops after ``explain`` and writes nothing at all.
    ``extra_rows`` are appended to the configured data before anything is checked
    (continuous training adds the labelled production rows); ``tags`` are set on the run.
    """
    settings = settings or resolve_settings(config)
    notify = observer or (lambda stage, detail: None)
    context = RunContext(config, settings, notify, extra_label)
    family = FAMILIES.for_task(config.task)
    context.family = family.name
    whole, until = family.lifecycle()
    graph = whole if record else whole.until(until)
    cached = use_cache and record and settings.stage_store is not None
    hooks = [ProgressHook(notify), AlertHook(config), TrackingHook(settings, context)]
    if record:
        hooks.append(WarmUpHook(settings.tracking_uri))
    runner = Runner(store=StageStore(settings.stage_store) if cached else None, hooks=hooks)
    extra = extra_rows if extra_rows is not None and len(extra_rows) else None
    state = runner.run(
        graph,
        config,
        context,
        sources={"extra_rows": extra, "fixed_params": fixed_params, "run_tags": dict(tags or {})},
        start_from=start_from,
    )
    return RunResult(
        tracking_uri=settings.tracking_uri,
        stage_seconds={r.name: r.seconds for r in state.records},
        stages=[r.summary() for r in state.records],
        **family.result(state, record),
    )


__all__ = [
    "Observer",
    "RunResult",
    "config_digest",
    "git_commit",
    "run_project",
    "with_rows",
]
