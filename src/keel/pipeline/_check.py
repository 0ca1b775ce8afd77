"""The Definition of Done, executable: one small gate per checklist item.

Each gate reads what the registry holds about one model version (its tags, its run's
parameters, metrics, tags and artifacts, its package's signature and metadata) and
returns ``pass``, ``fail`` or ``not available yet`` with its evidence: an artifact URI,
a number, a run id. A gate whose capability Keel does not have yet says so instead of
passing. ``keel.yaml``'s ``gates:`` says which gates are required and holds signed
waivers; a waived gate keeps its own status beside the waiver.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from keel.config import MODEL_GATES, GatesConfig
from keel.families import FAMILIES
from keel.monitoring import MONITORING_REFERENCE
from keel.registry import current_user, mlflow_scope, model_version, tracking

PASS, FAIL, UNAVAILABLE, WAIVED = "pass", "fail", "not available yet", "waived"

ITEMS = {
    "schema": "data validation schema defined and enforced",
    "feature_code": "feature code tested and versioned",
    "tracked": "experiment tracked with all parameters and metrics",
    "evaluated": "evaluated on multiple metrics and beats baseline",
    "fairness": "fairness assessed across protected groups",
    "registered": "registered with signature and artifacts",
    "load_tested": "inference endpoint tested under load",
    "drift": "drift detection configured",
    "dashboard": "monitoring dashboard available",
    "rollback": "rollback procedure documented",
    "tests": "tests passing",
    "stage_io": "clear stage inputs/outputs",
    "boundary_validation": "validation at boundaries",
    "idempotent": "idempotent and retryable stages",
    "failure_alerts": "failure alerts configured",
    "lineage": "lineage logged",
    "end_to_end": "end-to-end tested",
    "runbook": "runbook with operational procedures and contacts",
    "robustness": "adversarial robustness tested",
    "impact_assessment": "impact assessment: uses, misuses, risks, mitigations",
}
# a run's own gate tags and the Definition-of-Done gate each one belongs to
RUN_GATES = {
    "keel.gate.baseline": "evaluated",
    "keel.gate.behaviour": "tests",
    "keel.gate.fairness": "fairness",
    "keel.gate.robustness": "robustness",
}
RUN_ARTIFACTS = ("keel.yaml", "schema.json", "profile.json")


@dataclass
class Facts:
    """What the registry knows about one version, gathered once for all gates."""

    name: str
    version: str
    tracking_uri: str
    run_id: str | None
    version_tags: dict[str, str]
    run_tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    run_status: str = ""
    artifacts: set[str] = field(default_factory=set)
    signature: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    card: str | None = None
    runbook: str | None = None
    impact: str | None = None
    dataset_inputs: int = 0
    reruns: list[dict[str, Any]] = field(default_factory=list)
    package_files: set[str] = field(default_factory=set)  # the package's keel/ documents
    stages: list[dict[str, Any]] = field(default_factory=list)  # the run's stages.json

    def artifact(self, path: str) -> str:
        """The URI of one of the run's artifacts."""
        return f"runs:/{self.run_id}/{path}"


@dataclass
class GateResult:
    """One checklist item's verdict."""

    gate: str
    checklist: str  # "model" or "pipeline"
    item: str
    status: str
    evidence: str
    required: bool
    waiver: dict[str, str] | None = None

    @property
    def ok(self) -> bool:
        """Passed, or waived."""
        return self.status in (PASS, WAIVED)


@dataclass
class Checklist:
    """Every gate of one version, and the verdict on the required ones."""

    model: str
    version: str
    run_id: str | None
    results: list[GateResult]
    run_failed: list[str] = field(default_factory=list)  # gates the run itself failed

    @property
    def promotion_blockers(self) -> list[str]:
        """What stops ``keel promote``.

        Required gates that did not pass, and any gate the version's own run failed
        (baseline, behaviour, fairness) unless keel.yaml waives it.
        """
        status = {r.gate: r.status for r in self.results}
        failed = [g for g in self.run_failed if status.get(g) != WAIVED]
        return list(dict.fromkeys([r.gate for r in self.blocking] + failed))

    @property
    def passed(self) -> bool:
        """Every required gate passed or is waived."""
        return all(r.ok for r in self.results if r.required)

    @property
    def blocking(self) -> list[GateResult]:
        """Required gates that neither passed nor are waived."""
        return [r for r in self.results if r.required and not r.ok]

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``keel check --json``)."""
        return {
            "model": self.model,
            "version": self.version,
            "run_id": self.run_id,
            "passed": self.passed,
            "blocking": [r.gate for r in self.blocking],
            "gates": [asdict(r) for r in self.results],
        }


def gather(uri: str, tracking_uri: str) -> Facts:
    """Read everything the gates need about ``NAME[@ALIAS|/VERSION]`` from the registry."""
    with mlflow_scope(tracking_uri) as client:
        mv = model_version(client, uri, tracking_uri)
        facts = Facts(
            name=mv.name,
            version=str(mv.version),
            tracking_uri=tracking_uri,
            run_id=mv.run_id,
            version_tags=dict(mv.tags or {}),
        )
        facts.signature, facts.metadata, facts.package_files = tracking.package_info(
            mv.name, str(mv.version)
        )
        if not mv.run_id:
            return facts
        run = client.get_run(mv.run_id)
        facts.run_tags = dict(run.data.tags)
        facts.params = dict(run.data.params)
        facts.metrics = dict(run.data.metrics)
        facts.run_status = run.info.status
        facts.dataset_inputs = len(run.inputs.dataset_inputs) if run.inputs else 0
        for item in client.list_artifacts(mv.run_id):
            facts.artifacts.add(item.path)
            if item.is_dir:
                facts.artifacts.update(a.path for a in client.list_artifacts(mv.run_id, item.path))
        with tempfile.TemporaryDirectory() as folder:
            for attribute, path in (
                ("card", "card/model_card.md"),
                ("runbook", "card/runbook.md"),
                ("impact", "card/impact_assessment.md"),
            ):
                if path in facts.artifacts:
                    local = client.download_artifacts(mv.run_id, path, folder)
                    setattr(facts, attribute, Path(local).read_text())
            if "stages.json" in facts.artifacts:
                local = client.download_artifacts(mv.run_id, "stages.json", folder)
                try:
                    stages = json.loads(Path(local).read_text())
                    facts.stages = [s for s in stages if isinstance(s, dict)]
                except ValueError:
                    facts.stages = []
        digest = facts.run_tags.get("keel.config.digest")
        data = facts.run_tags.get("keel.dataset.digest")
        if digest and data:
            others = client.search_runs(
                [run.info.experiment_id],
                f"tags.`keel.config.digest` = '{digest}' and tags.`keel.dataset.digest` = '{data}'",
                max_results=20,
            )
            facts.reruns = [
                {"run_id": o.info.run_id, "metrics": o.data.metrics}
                for o in others
                if o.info.run_id != mv.run_id and o.info.status == "FINISHED"
            ]
    return facts


# --- the gates: one small function per checklist item ------------------------------

Verdict = tuple[str, str]


def _schema(f: Facts) -> Verdict:
    schema = f.metadata.get("schema") or {}
    columns = schema.get("columns") or []
    if not columns:
        return FAIL, "the package holds no schema (not made by `keel run`)"
    digest = f.run_tags.get("keel.schema.digest", "?")
    validated = _validated(f)
    return (
        (
            PASS,
            f"schema of {len(columns)} columns (digest {digest}) in the package;"
            " rows validated at ingest, every request validated by `keel serve`",
        )
        if validated
        else (FAIL, "the run did not record its validation stage")
    )


def _feature_code(f: Facts) -> Verdict:
    commit = f.version_tags.get("keel.commit", "")
    tested = f.run_tags.get("keel.gate.feature_code")
    code = f.run_tags.get("keel.code.features", "?")
    if tested is None:
        return FAIL, "the run recorded no feature tests (trained by an older Keel: run it again)"
    if tested != "passed":
        return FAIL, (
            f"the feature pipeline failed its tests on the test rows (run {f.run_id}; the"
            " report's feature_tests say which)"
        )
    if not commit or commit.startswith("unknown"):
        return FAIL, (
            "the project is not a git checkout: its code and keel.yaml are not versioned"
            " (`git init`, commit, run again)"
        )
    if "package_checks.json" in f.artifacts:  # the family checked its package
        family = FAMILIES.of_metadata(f.metadata)
        return PASS, (
            f"{family.name} package (code {code}) passed its checks before registration:"
            f" {family.package_evidence()} (run {f.run_id}, package_checks.json);"
            f" commit {commit}"
        )
    return PASS, (
        f"feature pipeline (keel.families.tabular.features {code}) passed determinism,"
        f" column order, missing values and unseen categories on the test rows of run"
        f" {f.run_id}; commit {commit}"
    )


def _tracked(f: Facts) -> Verdict:
    tests = [k for k in f.metrics if k.startswith("test_") and "_ci_" not in k]
    if not f.run_id or not f.params or not tests:
        return FAIL, "no MLflow run with parameters and test metrics"
    return PASS, f"run {f.run_id}: {len(f.params)} parameters, {len(f.metrics)} metrics"


def _evaluated(f: Facts) -> Verdict:
    tests = sorted(k for k in f.metrics if k.startswith("test_") and "_ci_" not in k)
    gate = f.run_tags.get("keel.gate.baseline")
    if len(tests) < 3:
        return FAIL, f"only {len(tests)} test metric(s)"
    low = f.metrics.get("gate_difference_low")
    margin = f" (difference CI low {low:+.4f})" if low is not None else ""
    if gate != "passed":
        return FAIL, f"baseline gate {gate or 'not run'}{margin}"
    intervals = sum(1 for k in f.metrics if k.endswith("_ci_low"))
    return PASS, (
        f"{len(tests)} test metrics, {intervals} with 95% intervals; beats the best"
        f" baseline{margin}"
    )


def _fairness(f: Facts) -> Verdict:
    gate = f.run_tags.get("keel.gate.fairness")
    sensitive = f.metadata.get("sensitive_features") or []
    if gate is None:
        return FAIL, "not assessed: no sensitive_features in keel.yaml"
    measures = sum(1 for k in f.metrics if k.startswith("fairness_"))
    where = f"{', '.join(sensitive)}; {measures} measures on run {f.run_id}"
    if gate == "failed":
        return FAIL, f.run_tags.get(
            "keel.fairness.breaches", "fairness gate failed"
        ) + f" ({where})"
    if gate == "passed":
        return PASS, f"limits hold for {where}"
    return PASS, f"assessed, not judged (no limits under fairness:) for {where}"


def _runbook(f: Facts) -> Verdict:
    if f.runbook is None:
        return FAIL, f"run {f.run_id} has no card/runbook.md (registered by an older Keel?)"
    if "Not stated: set card.contacts" in f.runbook:
        return FAIL, "the runbook names no on-call contact: set card.contacts in keel.yaml"
    return PASS, f"{f.artifact('card/runbook.md')}: serve, scale, roll back, alerts, contacts"


def _robustness(f: Facts) -> Verdict:
    gate = f.run_tags.get("keel.gate.robustness")
    flipped = f.metrics.get("robustness_flipped_within_budget")
    noise = f.metrics.get("robustness_flip_rate_noise_0.1")
    numbers = ", ".join(
        text
        for text in (
            f"{noise:.1%} flipped by noise of 0.1 sd" if noise is not None else "",
            f"{flipped:.1%} flipped within the change budget" if flipped is not None else "",
            f.run_tags.get("keel.robustness.shilling", ""),
        )
        if text
    )
    if gate is None:
        return FAIL, "not assessed (robustness.enabled: false, or an older Keel)"
    if gate == "failed":
        return FAIL, f.run_tags.get("keel.robustness.breaches", "a robustness limit") + (
            f" ({numbers})" if numbers else ""
        )
    judged = "within the limits of robustness:" if gate == "passed" else "measured, no limits"
    return PASS, f"{judged} ({numbers or 'see the report'})"


def _impact_assessment(f: Facts) -> Verdict:
    if f.impact is None:
        return FAIL, f"run {f.run_id} has no card/impact_assessment.md"
    missing = [
        key
        for key in ("intended_use", "misuses", "mitigations", "business_objective")
        if f"Not stated: set card.{key}" in f.impact
    ]
    if missing:
        return FAIL, "only people can say these: set " + ", ".join(
            f"card.{k}" for k in missing
        ) + " in keel.yaml"
    return PASS, f"{f.artifact('card/impact_assessment.md')} with measured risks"


def _registered(f: Facts) -> Verdict:
    missing = [a for a in RUN_ARTIFACTS if a not in f.artifacts]
    if not f.signature:
        return FAIL, f"models:/{f.name}/{f.version} has no signature"
    if missing or "card/model_card.md" not in f.artifacts:
        return FAIL, f"run {f.run_id} lacks {', '.join(missing) or 'the model card'}"
    return PASS, (
        f"models:/{f.name}/{f.version} with signature; {', '.join(RUN_ARTIFACTS)}, reports and"
        f" card at {f.artifact('')}"
    )


MAX_LOAD_ERROR_RATE = 0.01


def _load_tested(f: Facts) -> Verdict:
    raw = f.version_tags.get("keel.loadtest")
    if not raw:
        return FAIL, "no load test recorded: `keel serve`, then `keel loadtest` records one"
    try:
        r = json.loads(raw)
        numbers = (
            f"{r['requests']} requests at concurrency {r['concurrency']} on {r['when']}:"
            f" p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms,"
            f" {r['throughput']:.0f} req/s, error rate {r['error_rate']:.2%}"
        )
    except (ValueError, KeyError, TypeError):
        return FAIL, "the recorded load test (tag keel.loadtest) is unreadable; run it again"
    if r["error_rate"] > MAX_LOAD_ERROR_RATE:
        return FAIL, f"error rate above {MAX_LOAD_ERROR_RATE:.0%}: {numbers}"
    return PASS, numbers


def _monitored(f: Facts) -> dict[str, Any] | None:
    try:
        return json.loads(f.version_tags["keel.monitor"])
    except (KeyError, ValueError):
        return None


def _drift(f: Facts) -> Verdict:
    if MONITORING_REFERENCE in f.package_files:  # a family's own reference
        seen = _monitored(f)
        watched = FAMILIES.of_metadata(f.metadata).reference_description()
        reference = (
            f"{watched} in the package (keel/monitoring_reference.json); rules: monitoring.alerts"
        )
        when = f"last `keel monitor` {seen.get('when')}" if seen else "not monitored yet"
        return PASS, f"{reference}; {when}"
    if "drift_reference.json" not in f.package_files:
        return FAIL, (
            "no drift reference in the package (registered by an older Keel): train it again"
        )
    seen = _monitored(f)
    reference = (
        "drift reference in the package (keel/drift_reference.json); rules: monitoring.alerts"
    )
    if seen is None:
        return PASS, f"{reference}; not monitored yet (schedule `keel monitor`)"
    return PASS, (
        f"{reference}; last `keel monitor` {seen.get('when')}: {seen.get('rows')} rows in"
        f" {seen.get('windows')} windows, open incidents: {len(seen.get('open_incidents', []))}"
    )


def _dashboard(f: Facts) -> Verdict:
    seen = _monitored(f)
    if seen is None:
        return FAIL, (
            "no monitoring run recorded yet: serve the model, then `keel monitor --html PATH`"
            " (or GET /dashboard on the server)"
        )
    return PASS, (
        f"dashboard computed {seen.get('when')} over {seen.get('rows')} logged rows"
        " (GET /dashboard, `keel monitor --html`)"
    )


def _rollback(f: Facts) -> Verdict:
    if f.card and "keel rollback" in f.card:
        return PASS, f"rollback procedure in the model card: {f.artifact('card/model_card.md')}"
    return FAIL, "the model card has no rollback procedure (run `keel card` or `keel run` again)"


def _tests(f: Facts) -> Verdict:
    gate = f.run_tags.get("keel.gate.behaviour")
    if gate is None:
        return FAIL, "no behaviour tests in keel.yaml (behaviour: invariance, directional, minimum)"
    if gate == "passed":
        return PASS, f"behaviour tests passed on the test rows (run {f.run_id})"
    return FAIL, f"behaviour tests failed (run {f.run_id}; see its report)"


def _validated(f: Facts) -> bool:
    """The version's run went through the validate stage (ran or reused its result)."""
    return "stage_seconds.validate" in f.metrics or any(
        s.get("name") == "validate" for s in f.stages
    )


def _expected_stages(f: Facts) -> tuple[str, ...]:
    """The stages of the graph that trained this version (its recorded family's)."""
    return FAMILIES.of_metadata(f.metadata).stage_names


def _missing_stages(f: Facts) -> list[str]:
    recorded = {s.get("name") for s in f.stages}
    return [s for s in _expected_stages(f) if s not in recorded]


def _stage_io(f: Facts) -> Verdict:
    if not f.stages:
        return FAIL, f"run {f.run_id} has no stages.json (trained by an older Keel: run it again)"
    missing = _missing_stages(f)
    unkeyed = [s.get("name") for s in f.stages if not s.get("key") or "outputs" not in s]
    if missing or unkeyed:
        return FAIL, f"stages.json of run {f.run_id} lacks {', '.join(missing + unkeyed)}"
    links = sum(len(s.get("inputs") or {}) for s in f.stages)
    return PASS, (
        f"{len(f.stages)} stages with declared inputs and outputs; {links} input digests"
        f" linked to their producers in {f.artifact('stages.json')}"
    )


def _boundary_validation(f: Facts) -> Verdict:
    if not _validated(f) or not f.metadata.get("schema"):
        return FAIL, "no validation stage or no schema in the package"
    return PASS, (
        "data validated at ingest (exit 2 on violations); the package schema validates"
        " every serving request (HTTP 422 naming the row and field)"
    )


def _idempotent(f: Facts) -> Verdict:
    if not f.stages:
        return FAIL, f"run {f.run_id} has no stages.json: its stages are not keyed"
    raw = f.version_tags.get("keel.rerun")
    if not raw:
        return FAIL, (
            "no re-run recorded yet: run `keel run` again with the same config and data; it"
            " must reuse every stage and register no new version"
        )
    try:
        rerun = json.loads(raw)
    except ValueError:
        return FAIL, "the recorded re-run (tag keel.rerun) is unreadable; run `keel run` again"
    register = next((s.get("key") for s in f.stages if s.get("name") == "register"), None)
    if rerun.get("register_key") != register:
        return FAIL, "the recorded re-run reused another registration than this version's"
    return PASS, (
        f"a re-run on {rerun.get('when')}: register reused (key {register}), no new version;"
        f" {len(rerun.get('reused', []))} stages reused"
        + (f", re-ran {', '.join(rerun['ran'])}" if rerun.get("ran") else "")
    )


def _failure_alerts(f: Facts) -> Verdict:
    sinks = [s for s in f.run_tags.get("keel.failure_alerts", "").split(",") if s]
    if not sinks:
        return FAIL, "the run recorded no alert sinks (trained by an older Keel: run it again)"
    reaching = [s for s in sinks if s != "log"]
    if not reaching:
        return FAIL, (
            "a failed run is only written to the log: add a jsonl or webhook sink"
            " (monitoring.sinks)"
        )
    return PASS, f"a failed keel run alerts {', '.join(sinks)} (monitoring.sinks)"


def _lineage(f: Facts) -> Verdict:
    needed = ("keel.dataset.digest", "keel.split.digest", "keel.config.digest")
    missing = [t for t in needed if t not in f.run_tags]
    commit = f.version_tags.get("keel.commit", "unknown")
    if missing:
        return FAIL, f"run {f.run_id} lacks {', '.join(missing)}"
    return PASS, (
        f"data {f.run_tags['keel.dataset.digest']}, split {f.run_tags['keel.split.digest']},"
        f" config {f.run_tags['keel.config.digest']}, commit {commit},"
        f" {f.dataset_inputs} MLflow dataset input(s) on run {f.run_id}"
    )


def _end_to_end(f: Facts) -> Verdict:
    missing = _missing_stages(f)
    if f.run_status != "FINISHED" or not f.stages or missing:
        return FAIL, (
            f"run {f.run_id} {f.run_status or 'missing'}; stages not recorded:"
            f" {', '.join(missing) or 'none'}"
        )
    seconds = sum(float(s.get("seconds") or 0) for s in f.stages)
    return PASS, (
        f"run {f.run_id} went through all {len(f.stages)} stages, {f.stages[0]['name']} →"
        f" {f.stages[-1]['name']}, on real data ({seconds:.0f} s of stage time)"
    )


GATES: dict[str, Callable[[Facts], Verdict]] = {
    "schema": _schema,
    "feature_code": _feature_code,
    "tracked": _tracked,
    "evaluated": _evaluated,
    "fairness": _fairness,
    "registered": _registered,
    "load_tested": _load_tested,
    "drift": _drift,
    "dashboard": _dashboard,
    "rollback": _rollback,
    "tests": _tests,
    "stage_io": _stage_io,
    "boundary_validation": _boundary_validation,
    "idempotent": _idempotent,
    "failure_alerts": _failure_alerts,
    "lineage": _lineage,
    "end_to_end": _end_to_end,
    "runbook": _runbook,
    "robustness": _robustness,
    "impact_assessment": _impact_assessment,
}


def run_gates(facts: Facts, gates: GatesConfig) -> Checklist:
    """Judge every gate on ``facts``; apply ``gates``' required list and waivers."""
    results = []
    for key, judge in GATES.items():
        status, evidence = judge(facts)
        waiver = gates.waivers.get(key)
        if waiver is not None and status != PASS:
            status = WAIVED
        results.append(
            GateResult(
                gate=key,
                checklist="model" if key in MODEL_GATES else "pipeline",
                item=ITEMS[key],
                status=status,
                evidence=evidence,
                required=key in gates.required,
                waiver=waiver.model_dump() if waiver is not None else None,
            )
        )
    run_failed = [gate for tag, gate in RUN_GATES.items() if facts.run_tags.get(tag) == "failed"]
    return Checklist(facts.name, facts.version, facts.run_id, results, run_failed)


def check_version(
    uri: str, tracking_uri: str, gates: GatesConfig, record: bool = True
) -> Checklist:
    """The checklist of ``NAME[@ALIAS|/VERSION]``, recorded on the version when ``record``.

    Recorded as model-version tags: ``keel.check`` (when, who, verdict, every gate's
    status) and ``keel.waiver.<gate>`` (reason, author, who applied it, when).
    """
    checklist = run_gates(gather(uri, tracking_uri), gates)
    if record:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        who = current_user()
        summary = {
            "when": when,
            "who": who,
            "passed": checklist.passed,
            "gates": {r.gate: r.status for r in checklist.results},
            "required": list(gates.required),
        }
        with mlflow_scope(tracking_uri) as client:
            client.set_model_version_tag(
                checklist.model, checklist.version, "keel.check", json.dumps(summary)
            )
            for r in checklist.results:
                if r.waiver is not None:
                    client.set_model_version_tag(
                        checklist.model,
                        checklist.version,
                        f"keel.waiver.{r.gate}",
                        json.dumps({**r.waiver, "applied_by": who, "when": when}),
                    )
    return checklist


__all__ = [
    "FAIL",
    "GATES",
    "ITEMS",
    "PASS",
    "UNAVAILABLE",
    "WAIVED",
    "Checklist",
    "Facts",
    "GateResult",
    "check_version",
    "gather",
    "run_gates",
]
