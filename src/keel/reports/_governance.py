"""The runbook and the impact assessment of a registered version.

Both are built from what Keel already knows — the ``keel.yaml`` the version ran
with (serving, monitoring, privacy, the card's words), the registry (version,
semantic version, aliases) and what the run measured (fairness, slices, robustness,
cold start) — and rendered like the card (Markdown and HTML from the same
sections). The words only people can give (contacts, misuses, mitigations, the
business objective) come from ``card:``; when they are missing the document says
which key to set, it never invents them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from keel.config import shown_url
from keel.config._model import LOWER_IS_WORSE
from keel.reports._card import Section, render_html, render_markdown

# (method, path, scope, what) for each kind of model; `None` scope: no key needed.
# A unit test holds these against the routes of the real apps.
TABULAR_ENDPOINTS = (
    ("POST", "/predict", "predict", "score rows (the request schema is on /model)"),
    ("POST", "/explain", "predict", "SHAP contributions of rows"),
    ("POST", "/feedback", "predict", "labels and outcomes for answered requests"),
    ("GET", "/model", "predict", "name, version, semantic version, input schema"),
    ("GET", "/health", None, "liveness"),
    ("GET", "/ready", None, "readiness: the model answered its self-test"),
    ("GET", "/metrics", "admin", "Prometheus metrics"),
    ("GET", "/dashboard", "admin", "monitoring dashboard of this server's log"),
    ("GET", "/experiment", "predict", "the running A/B test, if any"),
    ("POST", "/v2/models/{name}/infer", "predict", "Open Inference Protocol"),
)

# what to do when an alert of each metric fires
ACTIONS = {
    "dataset_drift": "Open the dashboard's drift table: which features moved, since when."
    " Check the upstream data (a pipeline change, a new source, a unit change). If the"
    " world changed, retrain (`keel monitor --retrain` or `keel run`) on recent labelled"
    " rows and compare with the champion before promoting.",
    "drift_share": "As for dataset drift: find the features that moved, then fix the data or"
    " retrain.",
    "max_psi": "One feature moved a lot: check it upstream first (a broken feed looks like"
    " drift); retrain only if the change is real.",
    "prediction_drift": "The model's outputs moved: check the input drift first; if the"
    " inputs did not move, check the serving version (`GET /model`) and recent promotions"
    " (`keel history`); roll back if a promotion caused it.",
    "prediction_psi": "As for prediction drift.",
    "accuracy": "Performance fell on labelled traffic: confirm the labels are complete for"
    " the window, compare with the previous version's on the same window, roll back"
    " (`keel rollback NAME`) if the last promotion caused it, else retrain.",
    "balanced_accuracy": "As for accuracy.",
    "roc_auc": "As for accuracy.",
    "mae": "Errors grew on labelled traffic: as for accuracy.",
    "rmse": "Errors grew on labelled traffic: as for accuracy.",
    "demographic_parity_difference": "A fairness gap opened between groups: look at the"
    " dashboard's per-group rates, tell the owners, and consider rolling back; a mitigated"
    " retrain (fairness.mitigation) needs a new version and the gates.",
    "accuracy_difference": "Groups are served unequally well: as for a fairness gap.",
    "hit_rate_difference": "User groups get unequally good lists: as for a fairness gap.",
    "latency_p95_ms": "Latency is above target: check CPU saturation and `keel_requests`"
    " in /metrics; scale out (`--workers`, more replicas); on 2-core hosts keep one thread"
    " per model (LightGBM num_threads=1).",
    "unseen_share": "Many requests carry categories never seen in training: a new product"
    " or a changed upstream code; fix the feed or retrain with the new values.",
    "cold_start_share": "More users get the popularity fallback: new users arrive faster"
    " than retraining; retrain more often.",
    "coverage": "Recommendations concentrate on fewer items: check the catalogue feed; retrain.",
    "popularity_psi": "Recommended items' popularity shifted: check for a popularity"
    " shock or injected profiles (the robustness section), then retrain.",
    "requested_popularity_psi": "Users' histories shifted: retrain on recent interactions.",
    "consumed_popularity_psi": "What users consume shifted: retrain on recent interactions.",
    "hit_rate": "Fewer lists hold a consumed item: as for accuracy.",
    "ctr": "Fewer recommended items are consumed: as for accuracy.",
    "query_drift": "Questions moved away from the labelled ones: read a sample of recent"
    " questions (the log holds them redacted), label some, add documents the corpus lacks,"
    " and retrain (`keel run`).",
    "out_of_corpus_share": "More questions fall outside the corpus: add the missing"
    " documents, or tell users what the assistant covers.",
    "no_answer_rate": "More questions get no answer: check the corpus feed (documents left"
    " out?), then label the unanswered questions and retrain.",
    "block_rate": "More requests are blocked: an attack in progress, or a guardrail that"
    " blocks normal questions — read the blocked rules in the dashboard before loosening any.",
    "cache_hit_rate": "Fewer answers come from the cache: questions are more varied; check"
    " latency and scale if needed.",
    "helpful_rate": "Fewer answers help: read the unhelpful ones with their citations; fix the"
    " documents or retrain with more labelled questions.",
}
FAILURE_ACTION = (
    "A stage of `keel run` failed (alert `pipeline failure`, to the same sinks): the alert"
    " names the stage. Fix the cause and run `keel run` again: finished stages are reused,"
    " nothing is registered twice, and no alias moved (the alias moves last)."
)
DEFAULT_RETIREMENT = (
    "A version is retired when a successor has served as champion for a full monitoring"
    " cycle without a critical alert, when its training data is too old for its use, or"
    " when a data subject's erasure requires it (`keel forget` lists the versions trained"
    " on that subject). Retire with `keel retire NAME VERSION --reason '...'`"
    " (`--successor V` when it is the champion). Its run, card, runbook and every piece of"
    " evidence stay in the registry; no server loads it again."
)


def _sinks(monitoring: dict[str, Any]) -> list[str]:
    out = []
    for sink in monitoring.get("sinks") or []:
        kind = sink.get("type")
        if kind == "jsonl":
            out.append(f"JSON lines file `{sink.get('path')}`")
        elif kind == "webhook":
            out.append(f"webhook {shown_url(sink.get('url') or '')}")
        else:
            out.append("Keel's log (stderr of `keel monitor`)")
    return out or ["none configured (monitoring.sinks)"]


def _version_section(facts: dict[str, Any]) -> Section:
    """The registered version: name, versions, task, aliases, where it is recorded."""
    name, version = facts["name"], str(facts["version"])
    return (
        "This version",
        [
            (
                "table",
                (
                    ["", ""],
                    [
                        ["Model", name],
                        ["Registry version", version],
                        ["Semantic version", facts.get("semver") or "none"],
                        ["Task", facts.get("task") or ""],
                        ["Aliases now", ", ".join(facts.get("aliases") or []) or "none"],
                        ["Registered", facts.get("created") or ""],
                        ["Tracking / registry", facts.get("tracking_uri") or ""],
                        ["MLflow run", facts.get("run_id") or ""],
                    ],
                ),
            )
        ],
    )


def _contacts_section(card: dict[str, Any]) -> Section:
    """Who to call: the card's contacts and owners, or how to state them."""
    contacts = card.get("contacts") or []
    owners = card.get("owners") or []
    people = [*contacts, *(f"{o} (owner)" for o in owners if o not in contacts)]
    return (
        "Contacts",
        [("ul", people)] * bool(people)
        + (
            []
            if contacts
            else [
                (
                    "p",
                    "Not stated: set card.contacts in keel.yaml (who is on call, how to"
                    " reach them)" + ("." if owners else " and card.owners."),
                )
            ]
        ),
    )


def _serve_section(facts: dict[str, Any]) -> Section:
    """How to serve, pin, scale, measure and use the model offline."""
    name, version = facts["name"], str(facts["version"])
    workers = "--workers 4"
    return (
        "Serve and scale",
        [
            (
                "ul",
                [
                    f"Serve the champion: `keel serve --model {name}@champion` (binds"
                    " 127.0.0.1:8000; `--host 0.0.0.0` only behind a proxy that"
                    " terminates TLS). The server follows the alias: a promotion or a"
                    " rollback reaches it within `--poll-seconds`.",
                    f"Serve exactly this version: `keel serve --model {name}/{version}`.",
                    f"Scale on one host: `{workers}` (processes share the prediction"
                    " log); across hosts: `keel build` writes a Dockerfile and Kubernetes"
                    " / KServe manifests; put the log in PostgreSQL"
                    " (serving.prediction_log: postgresql://...).",
                    "Measure latency after any change: `keel loadtest"
                    " http://127.0.0.1:8000 --concurrency 8` against the running server"
                    " (recorded on the version it served, shown on its card).",
                    facts.get("offline")
                    or f"Batch scoring without a server: `keel predict {name}@champion INPUT OUT`.",
                ],
            )
        ],
    )


def _endpoints_section(facts: dict[str, Any], serving: dict[str, Any]) -> Section:
    """The served routes (the family's) and the API keys that guard them."""
    endpoints = facts.get("endpoints") or TABULAR_ENDPOINTS  # the family's, when it says
    keys = serving.get("api_keys") or []
    key_rows = [[k.get("name"), ", ".join(k.get("scopes") or ["predict"])] for k in keys]
    blocks: list[Any] = [
        (
            "table",
            (
                ["method", "path", "scope", "what"],
                [[m, p, s or "none (no key)", w] for m, p, s, w in endpoints],
            ),
        )
    ]
    if key_rows:
        blocks.append(("p", "Keys in keel.yaml (stored as SHA-256 only; the key is never here):"))
        blocks.append(("table", (["key name", "scopes"], key_rows)))
    else:
        blocks.append(
            (
                "p",
                "No API keys in keel.yaml: every endpoint is open to whoever reaches the"
                " port. Make one with `keel apikey NAME --scopes predict` (or set"
                " KEEL_API_KEYS) before binding anything but 127.0.0.1.",
            )
        )
    return ("Endpoints and keys", blocks)


def _release_section(name: str, version: str) -> Section:
    """Roll back, promote, see history, retire."""
    return (
        "Promote, roll back, retire",
        [
            (
                "ul",
                [
                    f"Roll back (one command, recorded): `keel rollback {name}` —"
                    " puts back the version the champion held before its last move;"
                    " running it again undoes it.",
                    f"Promote a version: `keel check {name}/V` then `keel promote"
                    f" {name} V` (refused when a required gate fails).",
                    f"See every move and version: `keel history {name}`.",
                    f"Retire this version: `keel retire {name} {version} --reason '...'`.",
                ],
            )
        ],
    )


def _alerts_section(monitoring: dict[str, Any]) -> Section:
    """Every alert rule (and the unconfigured ones) with what to do when it fires."""
    rules = monitoring.get("alerts") or []
    alert_rows = []
    for rule in rules:
        metric = rule.get("metric", "")
        when = rule.get("when") or ("below" if metric in LOWER_IS_WORSE else "above")
        alert_rows.append(
            [
                f"{metric} {when} {rule.get('threshold')}",
                rule.get("severity", "warning"),
                ACTIONS.get(metric, "Look at the dashboard for the window that alerted."),
            ]
        )
    alert_rows.append(["pipeline failure", "critical", FAILURE_ACTION])
    for metric in ("latency_p95_ms", "demographic_parity_difference", "accuracy"):
        if not any(r.get("metric") == metric for r in rules):
            alert_rows.append(
                [
                    f"{metric} (no rule configured: add one to monitoring.alerts)",
                    "-",
                    ACTIONS[metric],
                ]
            )
    return (
        "Alerts and what to do",
        [
            (
                "p",
                f"`keel monitor` (run it on a schedule, e.g. hourly cron) judges windows of"
                f" {monitoring.get('window', 'day')} and sends alerts to: "
                + "; ".join(_sinks(monitoring))
                + ".",
            ),
            ("table", (["alert", "severity", "what to do"], alert_rows)),
        ],
    )


def _logs_section(facts: dict[str, Any], serving: dict[str, Any]) -> Section:
    """Where the dashboard, the prediction log, the server log and the metrics are."""
    name = facts["name"]
    log = serving.get("prediction_log")
    log_text = shown_url(log) if log and "://" in str(log) else (log or "off")
    return (
        "Dashboard and logs",
        [
            (
                "ul",
                [
                    "Dashboard: `GET /dashboard` on the server (admin key), or"
                    f" `keel monitor {name}@champion --html dashboard.html` for a file.",
                    f"Prediction log: {log_text} (inputs redacted per pii.columns and"
                    " serving.redact; `keel monitor` reads it; erasures and opt-out counts"
                    " are in it too).",
                    "Server log: stderr of `keel serve` (errors carry the request id; no"
                    " request bodies).",
                    "Metrics: `GET /metrics` (Prometheus; admin key).",
                    f"Experiments and runs: `mlflow ui --backend-store-uri"
                    f" {facts.get('tracking_uri') or '<tracking uri>'}`.",
                ],
            )
        ],
    )


def _retrain_section(monitoring: dict[str, Any]) -> Section:
    """What triggers a retraining run and how its result is promoted."""
    retrain = monitoring.get("retrain") or {}
    return (
        "Retraining",
        [
            (
                "p",
                "Triggered by `keel monitor --retrain` when an alert of severity "
                + ", ".join(retrain.get("severities") or ["critical"])
                + " fires: a new `keel run` on the configured data"
                + (
                    " plus the labelled rows of the prediction log"
                    if retrain.get("include_production_rows", True)
                    else ""
                )
                + ". The new version is compared with the champion on the same rows"
                " and promoted only when better beyond noise and every gate passes;"
                " otherwise it waits as challenger.",
            )
        ],
    )


def _privacy_section(privacy: dict[str, Any]) -> Section:
    """Opt-out, erasure and retention."""
    retention = privacy.get("retention_days")
    return (
        "Personal data requests",
        [
            (
                "ul",
                [
                    'Opt-out: a request with `"opt_out": true` or the header'
                    f" `{privacy.get('opt_out_header', 'X-Keel-Opt-Out')}: 1` is answered,"
                    " counted, and not logged.",
                    "Erasure: `keel forget --subject ID` (by"
                    f" {privacy.get('subject_column') or 'privacy.subject_column: not set'})"
                    " removes the subject's logged rows and feedback, records the"
                    " erasure, and lists the versions trained on that subject.",
                    f"Retention: {retention} days, purged by `keel forget --expired` and"
                    " by the server every hour."
                    if retention
                    else "Retention: not limited (set privacy.retention_days).",
                ],
            )
        ],
    )


def build_runbook(facts: dict[str, Any], config: dict[str, Any]) -> list[Section]:
    """The runbook's sections.

    ``facts``: name, version, semver, task, aliases, tracking_uri, run_id, created; and
    from the family, ``endpoints`` (its routes: method, path, scope, what) and
    ``offline`` (how to use the model without a server).
    ``config``: the ``keel.yaml`` the version ran with (a dict).
    """
    card = config.get("card") or {}
    serving = config.get("serving") or {}
    monitoring = config.get("monitoring") or {}
    return [
        _version_section(facts),
        _contacts_section(card),
        _serve_section(facts),
        _endpoints_section(facts, serving),
        _release_section(facts["name"], str(facts["version"])),
        _alerts_section(monitoring),
        _logs_section(facts, serving),
        _retrain_section(monitoring),
        _privacy_section(config.get("privacy") or {}),
        ("Retirement policy", [("p", card.get("retirement") or DEFAULT_RETIREMENT)]),
    ]


def _measured_risks(measured: dict[str, Any]) -> list[str]:
    """What the run measured that an assessment must weigh, in sentences."""
    risks = []
    for gap in measured.get("fairness_gaps") or []:
        risks.append(gap)
    for slice_text in measured.get("weak_slices") or []:
        risks.append(slice_text)
    for line in measured.get("robustness") or []:
        risks.append(line)
    if measured.get("cold_start"):
        risks.append(measured["cold_start"])
    return risks


def build_impact_assessment(
    facts: dict[str, Any], card: dict[str, Any], measured: dict[str, Any]
) -> list[Section]:
    """The impact assessment's sections (the organisation's template, filled in).

    ``measured``: ``fairness_gaps``, ``weak_slices``, ``robustness`` (lists of
    sentences), ``cold_start`` (a sentence), ``limitations`` (what the card detected).
    """

    def stated(key: str, what: str) -> list[Any]:
        value = card.get(key)
        if isinstance(value, list) and value:
            return [("ul", value)]
        if isinstance(value, str) and value.strip():
            return [("p", value)]
        return [("p", f"Not stated: set card.{key} in keel.yaml ({what}).")]

    risks = _measured_risks(measured)
    return [
        (
            "System",
            [
                (
                    "p",
                    f"{facts['name']} version {facts['version']} (semantic version"
                    f" {facts.get('semver') or 'none'}), a {facts.get('task')} model.",
                )
            ],
        ),
        ("Business objective", stated("business_objective", "what decision it supports")),
        ("Success metrics", stated("success_metrics", "how success is measured")),
        ("Intended use", stated("intended_use", "who uses it, for what")),
        ("Out of scope", stated("out_of_scope", "uses it must not serve")),
        ("Potential misuses", stated("misuses", "how it could be misused or cause harm")),
        (
            "Measured risks (from this version's run)",
            [("ul", risks)]
            if risks
            else [("p", "The run flagged no gap, weak slice or fragility.")],
        ),
        (
            "Limitations",
            [("ul", [*(card.get("limitations") or []), *(measured.get("limitations") or [])])]
            if card.get("limitations") or measured.get("limitations")
            else [("p", "None stated or detected.")],
        ),
        ("Mitigation strategies", stated("mitigations", "what reduces each risk above")),
        (
            "Accountability",
            [
                (
                    "ul",
                    [
                        "owners: "
                        + (", ".join(card.get("owners") or []) or "not stated (card.owners)"),
                        "contacts: "
                        + (", ".join(card.get("contacts") or []) or "not stated (card.contacts)"),
                    ],
                )
            ],
        ),
    ]


def missing_impact_words(card: dict[str, Any]) -> list[str]:
    """The ``card.*`` keys an impact assessment needs that are not stated."""
    needed = ("intended_use", "misuses", "mitigations", "business_objective")
    return [k for k in needed if not card.get(k)]


def write_governance(
    folder: Path,
    facts: dict[str, Any],
    config: dict[str, Any],
    measured: dict[str, Any],
) -> dict[str, str]:
    """Write ``runbook.{md,html}`` and ``impact_assessment.{md,html}`` into ``folder``."""
    from keel.reports._pages import atomic_write

    name, version = facts["name"], facts["version"]
    runbook = build_runbook(facts, config)
    impact = build_impact_assessment(facts, config.get("card") or {}, measured)
    paths = {
        "runbook_md": folder / "runbook.md",
        "runbook_html": folder / "runbook.html",
        "impact_assessment_md": folder / "impact_assessment.md",
        "impact_assessment_html": folder / "impact_assessment.html",
    }
    title = f"Runbook: {name} version {version}"
    atomic_write(paths["runbook_md"], render_markdown(title, runbook))
    atomic_write(paths["runbook_html"], render_html(title, runbook))
    title = f"Impact assessment: {name} version {version}"
    atomic_write(paths["impact_assessment_md"], render_markdown(title, impact))
    atomic_write(paths["impact_assessment_html"], render_html(title, impact))
    return {k: str(v) for k, v in paths.items()}


__all__ = [
    "TABULAR_ENDPOINTS",
    "build_impact_assessment",
    "build_runbook",
    "missing_impact_words",
    "write_governance",
]
