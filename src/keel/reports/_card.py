"""Model cards and datasheets, built from what a run recorded.

Every number on a card comes from the run's ``report.json`` (the same document the
evaluation report and MLflow were written from); the words people must supply —
owners, intended use, out-of-scope uses, limitations — come from ``card:`` in
``keel.yaml``. What the run itself detected (small groups, fairness gaps, poor
calibration, weak slices, a failed gate) is added to the limitations automatically.

A card is a list of sections, each a list of blocks (paragraph, bullet list, table,
chart); Markdown and HTML are two renderings of the same sections, so they cannot
disagree.
"""

from __future__ import annotations

import html
import math
from typing import Any

from keel.reports._document import RunReport

Block = tuple[str, Any]  # ("p", text) | ("ul", [text]) | ("table", (head, rows)) | ("bars", …)
Section = tuple[str, list[Block]]

CALIBRATION_GAP = 0.1  # mean |predicted - observed| over the calibration bins
FAIRNESS_GAP = 0.1  # a difference measure above this is called out


# what people read on a card, for the names the code uses
WORDS = {
    "demographic_parity_difference": "Demographic parity difference",
    "demographic_parity_ratio": "Demographic parity ratio",
    "equalized_odds_difference": "Equalized odds difference",
    "equal_opportunity_difference": "Equal opportunity difference",
    "disparate_impact_ratio": "Disparate impact ratio",
    "accuracy_difference": "Accuracy difference",
    "rmse_difference": "RMSE difference (root mean squared error)",
    "mae_difference": "MAE difference (mean absolute error)",
    "selection_rate": "Selection rate",
    "accuracy": "Accuracy",
    "rmse": "RMSE (root mean squared error)",
    "mae": "MAE (mean absolute error)",
    "true_positive_rate": "True positive rate",
    "false_positive_rate": "False positive rate",
}


def words(name: str) -> str:
    """A measure's name as people read it: ``Demographic parity difference``."""
    return WORDS.get(name) or name.replace("_", " ").capitalize()


def resource_table(resources: list[dict[str, Any]] | None) -> tuple[list[str], list[list[Any]]]:
    """Wall time, CPU seconds and peak memory per stage, as a table's head and rows.

    A reused stage shows what it cost when it ran (its manifest) in brackets.
    """
    head = ["stage", "status", "wall s", "CPU s", "peak memory MB"]
    rows = []
    for r in resources or []:
        then = r.get("ran_with") or {}
        cpu, peak = r.get("cpu_seconds"), r.get("peak_mb")
        if r.get("status") == "reused" and then:
            cpu_text = f"{_num(cpu, 2)} (ran: {_num(then.get('cpu_seconds'), 2)})"
            peak_text = f"{_num(peak, 0)} (ran: {_num(then.get('peak_mb'), 0)})"
        else:
            cpu_text, peak_text = _num(cpu, 2), _num(peak, 0)
        if r.get("peak_scope") == "process":
            peak_text += " (process peak)"
        rows.append(
            [r.get("stage"), r.get("status"), _num(r.get("seconds"), 2), cpu_text, peak_text]
        )
    return head, rows


def _first_metric(fairness: dict[str, Any]) -> str:
    """The headline of a report written before reports named it: its first group metric."""
    for result in fairness.get("features", {}).values():
        for group in result.get("groups", []):
            for key, value in group.items():
                if isinstance(value, dict) and "value" in value:
                    return key
    return "accuracy"


def _num(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.{digits}f}"
    return "—" if value is None else str(value)


def detected_limitations(report: RunReport) -> list[str]:
    """Limitations the run found by itself, in words, with the numbers."""
    found: list[str] = []
    assessment = report.assessment
    gate = assessment.get("gate")
    if gate and not gate["passed"]:
        found.append(
            f"It does not beat the best baseline ({gate['baseline']}) on {gate['metric']}"
            f" with 95 % confidence (difference {gate['difference']['value']:+.4f},"
            f" CI {gate['difference']['low']:+.4f} to {gate['difference']['high']:+.4f})."
        )
    fairness = assessment.get("fairness") or {}
    for feature, result in fairness.get("features", {}).items():
        small = result.get("small_groups", [])
        if small:
            found.append(
                f"{feature}: {len(small)} group(s) have fewer than"
                f" {fairness['min_group_size']} test rows and were not judged"
                f" ({', '.join(map(str, small[:5]))}{'…' if len(small) > 5 else ''})."
            )
        for measure, value in result.get("measures", {}).items():
            if measure.endswith("_difference") and value > FAIRNESS_GAP:
                found.append(f"{feature}: {words(measure)} is {value:.3f} (above {FAIRNESS_GAP}).")
    for breach in fairness.get("breaches", []):
        found.append(
            f"Fairness limit breached: {breach['feature']} {words(breach['measure'])} ="
            f" {breach['value']:.4f} ({breach['kind']} {breach['limit']:g})."
        )
    calibration = assessment.get("diagnostics", {}).get("calibration") or []
    if calibration:
        gap = sum(abs(b["predicted"] - b["observed"]) for b in calibration) / len(calibration)
        if gap > CALIBRATION_GAP:
            found.append(
                f"Probabilities are poorly calibrated: predicted and observed rates differ"
                f" by {gap:.3f} on average over {len(calibration)} bins."
            )
    for piece in assessment.get("flagged_slices", [])[:5]:
        found.append(
            f"Weak slice: {piece['feature']} = {piece['value']} ({piece['rows']} test rows)"
            f" is {piece['gap']:.3f} below the overall score."
        )
    curve = assessment.get("diagnostics", {}).get("learning_curve", {})
    diagnosis = curve.get("diagnosis", "")
    if diagnosis.startswith(("high variance", "high bias")):
        found.append(f"Learning curve: {diagnosis}.")
    failed = [b for b in assessment.get("behaviour", []) if not b["passed"]]
    for test in failed:
        found.append(f"Behaviour test failed: {test['kind']} — {test['detail']}.")
    return found


def measured_risks(report: RunReport) -> dict[str, Any]:
    """What the impact assessment weighs, from the run: gaps, weak slices, robustness."""
    found = detected_limitations(report)
    gaps = [t for t in found if "Fairness" in t or "group(s)" in t or "difference is" in t]
    slices = [t for t in found if t.startswith("Weak slice")]
    robustness = robustness_lines(report.assessment.get("robustness"))
    rest = [t for t in found if t not in gaps and t not in slices]
    return {
        "fairness_gaps": gaps,
        "weak_slices": slices,
        "robustness": robustness,
        "limitations": rest,
    }


def robustness_lines(robustness: dict[str, Any] | None) -> list[str]:
    """The robustness results in sentences (empty when not measured)."""
    if not robustness:
        return []
    return list(robustness.get("summary") or [])


def _details(
    report: RunReport,
    card_config: dict[str, Any],
    registry: dict[str, Any],
    loadtest: dict[str, Any] | None,
) -> list[Section]:
    """Card section(s): details."""
    sections: list[Section] = []
    owners = card_config.get("owners") or ["not stated (set card.owners in keel.yaml)"]
    sections.append(
        (
            "Model details",
            [
                (
                    "table",
                    (
                        ["", ""],
                        [
                            ["Name", registry["name"]],
                            ["Version", registry["version"]],
                            [
                                "Semantic version",
                                registry.get("semver") or "none (registered by an older Keel)",
                            ],
                            ["Aliases", ", ".join(registry.get("aliases") or []) or "none"],
                            ["Type", f"{_model_type(report)} ({report.task})"],
                            ["Registered", registry.get("created", "")],
                            ["Owners", ", ".join(owners)],
                            ["MLflow run", report.run_id],
                        ],
                    ),
                )
            ],
        )
    )
    return sections


def _intended_use(
    report: RunReport,
    card_config: dict[str, Any],
    registry: dict[str, Any],
    loadtest: dict[str, Any] | None,
) -> list[Section]:
    """Card section(s): intended_use."""
    sections: list[Section] = []
    use = card_config.get("intended_use") or "Not stated (set card.intended_use in keel.yaml)."
    out_of_scope = card_config.get("out_of_scope") or [
        "Not stated (set card.out_of_scope in keel.yaml)."
    ]
    sections.append(("Intended use", [("p", use), ("p", "Out of scope:"), ("ul", out_of_scope)]))

    return sections


def _training_data(
    report: RunReport,
    card_config: dict[str, Any],
    registry: dict[str, Any],
    loadtest: dict[str, Any] | None,
) -> list[Section]:
    """Card section(s): training_data."""
    data = report.data
    assessment = report.assessment
    sizes = data.get("split_sizes", {})
    sections: list[Section] = []
    sizes = data.get("split_sizes", {})
    training = [
        ["Source", data.get("source", "")],
        ["Digest", data.get("digest", "")],
        ["Rows", data.get("rows", "")],
        ["Split", ", ".join(f"{k} {v}" for k, v in sizes.items())],
    ]
    if data.get("period"):
        training.append(["Period", data["period"]])
    shipped = assessment.get("shipped") or {}
    if shipped.get("note"):
        training.append(["Shipped model", shipped["note"]])
    sections.append(("Training data", [("table", (["", ""], training))]))

    return sections


def _evaluation(
    report: RunReport,
    card_config: dict[str, Any],
    registry: dict[str, Any],
    loadtest: dict[str, Any] | None,
) -> list[Section]:
    """Card section(s): evaluation."""
    data = report.data
    assessment = report.assessment
    intervals = assessment.get("intervals", {})
    primary = report.primary_metric
    sizes = data.get("split_sizes", {})
    sections: list[Section] = []
    rows = [
        [name, _num(i["value"]), f"{_num(i['low'])} – {_num(i['high'])}"]
        for name, i in sorted(intervals.items())
    ]
    evaluation: list[Block] = [
        ("p", f"On {sizes.get('test', '?')} held-out test rows; primary metric {primary}."),
        ("table", (["metric", "test", "95 % bootstrap CI"], rows)),
        (
            "bars",
            (
                f"test metrics with 95 % intervals ({report.task})",
                [
                    (name, i["value"], i["low"], i["high"])
                    for name, i in sorted(intervals.items())
                    if 0 <= i["value"] <= 1
                ],
            ),
        ),
    ]
    gate = assessment.get("gate")
    if gate:
        d = gate["difference"]
        evaluation.append(
            (
                "p",
                f"Versus the best baseline ({gate['baseline']}): {primary} difference"
                f" {d['value']:+.4f} (95 % CI {d['low']:+.4f} to {d['high']:+.4f}) —"
                f" gate {'passed' if gate['passed'] else 'FAILED'}.",
            )
        )
    threshold = assessment.get("threshold") or {}
    if threshold.get("value") is not None:
        evaluation.append(
            (
                "p",
                f"Decisions use the threshold {threshold['value']:.4f} (chosen on validation"
                f" for {threshold['objective']}); the metrics above are at it.",
            )
        )
    elif threshold.get("note"):
        evaluation.append(("p", f"Decisions: {threshold['note']}."))
    sections.append(("Evaluation", evaluation))

    return sections


def _fairness_section(
    report: RunReport,
    card_config: dict[str, Any],
    registry: dict[str, Any],
    loadtest: dict[str, Any] | None,
) -> list[Section]:
    """Card section(s): fairness_section."""
    assessment = report.assessment
    primary = report.primary_metric
    sections: list[Section] = []
    fairness = assessment.get("fairness")
    if fairness and fairness.get("features"):
        blocks: list[Block] = []
        verdict = (
            "not judged (no limits configured)"
            if not fairness["judged"]
            else "passed"
            if fairness["passed"]
            else "FAILED"
        )
        blocks.append(("p", f"Fairness gate: {verdict}."))
        measure_rows = []
        for feature, result in fairness["features"].items():
            for measure, value in result["measures"].items():
                measure_rows.append([feature, words(measure), _num(value)])
        blocks.append(("table", (["sensitive feature", "measure", "value"], measure_rows)))
        mitigation = assessment.get("mitigation")
        if mitigation:
            before = mitigation["before"]
            rows_ba = [
                [
                    f"{feature}: {words(measure)}",
                    _num(value),
                    _num(mitigation["after"]["fairness"][feature].get(measure)),
                ]
                for feature, measures in before["fairness"].items()
                for measure, value in measures.items()
            ] + [
                [
                    f"test {primary}",
                    _num(before["metrics"].get(primary)),
                    _num(mitigation["after"]["metrics"].get(primary)),
                ]
            ]
            how = mitigation["method"]
            if mitigation.get("constraint"):
                how += f", constraint {mitigation['constraint']}"
            blocks.append(("p", f"Mitigation: {how} (the shipped model is 'after')."))
            if mitigation.get("sensitive_features_at_prediction"):
                blocks.append(
                    (
                        "p",
                        "The shipped model needs the sensitive features at prediction time"
                        " (a threshold per group); the server refuses rows without them.",
                    )
                )
            blocks.append(("table", (["", "before", "after"], rows_ba)))
        headline = fairness.get("headline") or _first_metric(fairness)
        for feature, result in list(fairness["features"].items())[:3]:
            bars = [
                (f"{g['group']} (n={g['rows']})", *_triple(g.get(headline)))
                for g in result["groups"]
                if g.get(headline)
            ]
            blocks.append(("bars", (f"{words(headline)} by {feature}", bars)))
        sections.append(("Fairness", blocks))
    else:
        sections.append(
            ("Fairness", [("p", "Not assessed: no sensitive_features configured in keel.yaml.")])
        )

    return sections


def _top_features(
    report: RunReport,
    card_config: dict[str, Any],
    registry: dict[str, Any],
    loadtest: dict[str, Any] | None,
) -> list[Section]:
    """Card section(s): top_features."""
    assessment = report.assessment
    sections: list[Section] = []
    explanations = assessment.get("explanations")
    if explanations:
        # report.json keeps keys sorted by name: order by importance again
        ranked = sorted(explanations["shap_importance"].items(), key=lambda kv: -kv[1])
        top = ranked[:10]
        sections.append(
            (
                "Top features",
                [
                    ("p", f"Mean |SHAP| on test rows, in terms of {explanations['output']}."),
                    ("bars", ("mean absolute SHAP", [(n, v, None, None) for n, v in top])),
                ],
            )
        )

    return sections


def _limitations(
    report: RunReport,
    card_config: dict[str, Any],
    registry: dict[str, Any],
    loadtest: dict[str, Any] | None,
) -> list[Section]:
    """Card section(s): limitations."""
    sections: list[Section] = []
    limitations = list(card_config.get("limitations") or [])
    detected = detected_limitations(report)
    blocks = []
    if limitations:
        blocks += [("p", "Stated by the owners:"), ("ul", limitations)]
    blocks += [
        ("p", "Detected by the run:"),
        ("ul", detected or ["Nothing flagged by Keel's checks."]),
    ]
    ethics = card_config.get("ethical_considerations") or []
    if ethics:
        blocks += [("p", "Ethical considerations:"), ("ul", ethics)]
    sections.append(("Limitations and ethical considerations", blocks))

    return sections


def _quantitative(
    report: RunReport,
    card_config: dict[str, Any],
    registry: dict[str, Any],
    loadtest: dict[str, Any] | None,
) -> list[Section]:
    """Card section(s): quantitative."""
    sections: list[Section] = []
    if loadtest:
        quantitative = [
            (
                "table",
                (
                    ["p50 ms", "p95 ms", "p99 ms", "requests/s", "error rate"],
                    [
                        [
                            _num(loadtest.get("p50_ms"), 1),
                            _num(loadtest.get("p95_ms"), 1),
                            _num(loadtest.get("p99_ms"), 1),
                            _num(loadtest.get("throughput"), 1),
                            _num(loadtest.get("error_rate")),
                        ]
                    ],
                ),
            )
        ]
    else:
        quantitative = [("p", "Serving latency: not measured yet (no load test recorded).")]
    sections.append(("Quantitative analysis", quantitative))

    return sections


AB_NOT_RUN = (
    "No A/B test has concluded on this version: not run yet (`keel experiment` fills this section)."
)


def _signed(value: Any) -> str:
    return "—" if value is None else f"{value:+.4g}"


def ab_test_blocks(tests: list[dict[str, Any]] | None) -> list[Block]:
    """The "A/B test results" blocks: each concluded test on this version, its effects."""
    if not tests:
        return [("p", AB_NOT_RUN)]
    blocks: list[Block] = []
    for t in tests:
        units = t.get("units") or {}
        blocks.append(
            (
                "p",
                f"{t['name']} ({t.get('concluded', '')[:10]}): this version was the"
                f" {t.get('role', '?')}; version {t['challenger_version']} (challenger,"
                f" {t.get('split', 50):g} % of units) against version {t['champion_version']}"
                f" (champion) for {float(t.get('days') or 0):.1f} days,"
                f" {units.get('champion', 0):,} / {units.get('challenger', 0):,} units."
                f" Decision: {t['decision']} — {t['reason']}"
                + (f" (forced: {t['forced']})" if t.get("forced") else "")
                + (" The challenger was promoted." if t.get("promoted") else "")
                + f" Sample-ratio check p = {float(t.get('srm_p_value', math.nan)):.3g}.",
            )
        )
        rows = [
            [
                x["metric"],
                x.get("role", ""),
                _num(x.get("control")),
                _num(x.get("treatment")),
                f"{_signed(x.get('absolute'))} [{_signed(x.get('low'))}, {_signed(x.get('high'))}]",
                _num(x.get("p_value"), 3),
                _num(x.get("sequential_p_value"), 3),
            ]
            for x in t.get("effects") or []
        ]
        blocks.append(
            (
                "table",
                (
                    [
                        "metric",
                        "role",
                        "champion",
                        "challenger",
                        "effect [95% CI]",
                        "p",
                        "sequential p",
                    ],
                    rows,
                ),
            )
        )
    return blocks


def _ab_tests(
    report: RunReport,
    card_config: dict[str, Any],
    registry: dict[str, Any],
    loadtest: dict[str, Any] | None,
) -> list[Section]:
    """Card section: the A/B tests this version took part in."""
    return [("A/B test results", ab_test_blocks(registry.get("ab_tests")))]


def _rollback(
    report: RunReport,
    card_config: dict[str, Any],
    registry: dict[str, Any],
    loadtest: dict[str, Any] | None,
) -> list[Section]:
    """Card section(s): rollback."""
    sections: list[Section] = []
    name = registry["name"]
    sections.append(
        (
            "Rollback",
            [
                (
                    "p",
                    "One command puts back the version the champion alias pointed at before"
                    " its last move, and records who did it and why (`keel history` lists"
                    " every move). A running `keel serve` following the alias swaps to"
                    " that version by itself within its poll interval, without failing a"
                    " request.",
                ),
                ("code", f"keel rollback {name} --reason 'WHY'"),
            ],
        )
    )
    return sections


def _robustness(
    report: RunReport,
    card_config: dict[str, Any],
    registry: dict[str, Any],
    loadtest: dict[str, Any] | None,
) -> list[Section]:
    """Card section(s): adversarial robustness, and the rules that mimic the model."""
    sections: list[Section] = []
    robustness = report.assessment.get("robustness")
    if robustness:
        blocks: list[Block] = [("ul", robustness_lines(robustness))]
        verdict = robustness.get("verdict")
        if verdict:
            blocks.append(("p", f"Robustness gate: {verdict}."))
        sections.append(("Robustness", blocks))
    rules = (report.assessment.get("explanations") or {}).get("rules") or report.assessment.get(
        "rules"
    )
    if rules:
        sections.append(
            (
                "Rules that mimic the model",
                [
                    (
                        "p",
                        f"A depth-{rules['depth']} decision tree fitted to the model's"
                        f" decisions agrees with it on {rules['fidelity']:.1%} of the test"
                        " rows (its fidelity). Read it as a summary, not as the model.",
                    ),
                    ("code", rules["text"]),
                ],
            )
        )
    return sections


def _documents(
    report: RunReport,
    card_config: dict[str, Any],
    registry: dict[str, Any],
    loadtest: dict[str, Any] | None,
) -> list[Section]:
    """Card section(s): the documents that travel with the card."""
    return [
        (
            "Companion documents",
            [
                (
                    "ul",
                    [
                        "Datasheet of the training data: datasheet.md",
                        "Runbook (serve, scale, roll back, alerts, contacts): runbook.md",
                        "Impact assessment (uses, misuses, risks, mitigations):"
                        " impact_assessment.md",
                    ],
                )
            ],
        )
    ]


_SECTIONS = (
    _details,
    _intended_use,
    _training_data,
    _evaluation,
    _fairness_section,
    _top_features,
    _limitations,
    _quantitative,
    _robustness,
    _ab_tests,
    _rollback,
    _documents,
)


def build_card(
    report: RunReport,
    card_config: dict[str, Any],
    registry: dict[str, Any],
    loadtest: dict[str, Any] | None = None,
) -> list[Section]:
    """The sections of the model card for one registered version.

    ``registry`` holds ``name``, ``version``, ``aliases``, ``created`` and
    ``tracking_uri``; ``loadtest`` the latest load test's numbers, when there is one.
    """
    sections: list[Section] = []
    for part in _SECTIONS:
        sections += part(report, card_config, registry, loadtest)
    return sections


def _triple(metric: dict[str, float] | None) -> tuple[float, float | None, float | None]:
    if not metric:
        return (float("nan"), None, None)
    return (metric["value"], metric.get("low"), metric.get("high"))


def feature_dictionary(
    columns: list[dict[str, Any]], described: dict[str, str] | None
) -> tuple[list[str], list[list[Any]]]:
    """Every column with what it means (``features:`` in keel.yaml) or that it is not said."""
    described = described or {}
    rows = [
        [
            c["name"],
            c.get("kind", ""),
            c.get("role", "feature"),
            described.get(c["name"]) or f"not described (features.{c['name']} in keel.yaml)",
        ]
        for c in columns
    ]
    return ["column", "kind", "role", "description"], rows


def data_use(privacy: dict[str, Any] | None, serving: dict[str, Any] | None) -> list[Block]:
    """The data-use statement: what is collected, why, how long it is kept, the rights."""
    privacy, serving = privacy or {}, serving or {}
    retention = privacy.get("retention_days")
    log = serving.get("prediction_log")
    collected = privacy.get("collected") or (
        "Every answered request's inputs (personal data redacted, masked, hashed or dropped"
        " as configured), the model's outputs, the time and the request id, in the"
        " prediction log; later labels and outcomes sent to /feedback."
        if log
        else "Nothing: the prediction log is off (serving.prediction_log: null)."
    )
    return [
        (
            "ul",
            [
                f"What is collected: {collected}",
                "Why: "
                + (
                    privacy.get("purpose")
                    or "not stated (privacy.purpose in keel.yaml); Keel uses the log for"
                    " monitoring (drift, performance, fairness) and retraining"
                ),
                f"How long: {retention} days, then purged"
                if retention
                else "How long: not limited (set privacy.retention_days)",
                'Opting out: a request with `"opt_out": true`'
                f" or the header `{privacy.get('opt_out_header', 'X-Keel-Opt-Out')}: 1` is"
                " answered and counted but not stored, and never enters retraining.",
                "Erasure: `keel forget --subject ID` removes a person's logged rows and"
                " feedback (by "
                + (privacy.get("subject_column") or "privacy.subject_column, not set")
                + ") and lists the model versions trained on their data.",
            ],
        )
    ]


def build_datasheet(
    report: RunReport,
    card_config: dict[str, Any],
    profile: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
) -> list[Section]:
    """The datasheet of the training data: source, collection, use, columns, PII.

    ``profile`` is the training rows' profile (the package's drift reference);
    ``config`` the keel.yaml the run used (feature descriptions, privacy).
    """
    config = config or {}
    data = report.data
    schema = report.schema
    profile = profile or {}
    sections: list[Section] = []
    lineage = data.get("lineage") or {}
    sections.append(
        (
            "Source",
            [
                (
                    "table",
                    (
                        ["", ""],
                        [
                            ["Source", data.get("source", "")],
                            ["Content digest", data.get("digest", "")],
                            ["Rows", data.get("rows", "")],
                            ["Rows without a label (dropped)", data.get("rows_without_target", 0)],
                            ["Snapshot", data.get("snapshot", "")],
                            *[[f"lineage: {k}", v] for k, v in sorted(lineage.items())],
                        ],
                    ),
                )
            ],
        )
    )
    collection = card_config.get("data_collection") or (
        "Not stated (set card.data_collection in keel.yaml: who collected the data, how,"
        " when, and with what consent)."
    )
    sections.append(("Collection", [("p", collection)]))
    sections.append(("Data use", data_use(config.get("privacy"), config.get("serving"))))
    sections.append(
        (
            "Feature dictionary",
            [("table", feature_dictionary(schema.get("columns", []), config.get("features")))],
        )
    )
    columns = profile.get("columns", {})
    rows = []
    for column in schema.get("columns", []):
        stats = columns.get(column["name"], {})
        count = stats.get("count")
        missing = stats.get("missing")
        share = (
            f"{missing / (count + missing):.1%}"
            if isinstance(count, int) and isinstance(missing, int) and count + missing
            else "—"
        )
        rows.append([column["name"], column.get("kind", ""), column.get("role", "feature"), share])
    sections.append(
        (
            "Columns",
            [
                (
                    "p",
                    "Missing shares are measured on the training rows (the profile kept as"
                    " the drift reference).",
                ),
                ("table", (["column", "kind", "role", "missing"], rows)),
            ],
        )
    )
    pii = data.get("pii") or {}
    pii_rows = [
        [
            name,
            found.get("action") or "none (nothing found)",
            found.get("rows_with_pii", "—"),
            ", ".join(f"{k} {v}" for k, v in sorted((found.get("entities") or {}).items())),
        ]
        for name, found in sorted((pii.get("columns") or {}).items())
    ]
    blocks: list[Block] = [("p", f"Scanner: {pii.get('engine') or 'not run'}.")]
    if pii_rows:
        blocks.append(
            ("table", (["column", "action", "rows with PII", "entities (counts)"], pii_rows))
        )
    else:
        blocks.append(("p", "No column needed handling."))
    sections.append(("Personal data", blocks))
    return sections


# -- rendering ---------------------------------------------------------------------------


def render_markdown(title: str, sections: list[Section]) -> str:
    """The sections as Markdown."""
    lines = [f"# {title}", ""]
    for heading, blocks in sections:
        lines += [f"## {heading}", ""]
        for kind, content in blocks:
            if kind == "p":
                lines += [str(content), ""]
            elif kind == "ul":
                lines += [f"- {item}" for item in content] + [""]
            elif kind == "code":
                lines += ["```", str(content), "```", ""]
            elif kind == "table":
                head, rows = content
                lines.append("| " + " | ".join(head) + " |")
                lines.append("|" + "---|" * len(head))
                for row in rows:
                    cells = [str(c).replace("|", "\\|").replace("\n", " ") for c in row]
                    lines.append("| " + " | ".join(cells) + " |")
                lines.append("")
            elif kind == "bars":
                label, bars = content
                if label.startswith("test metrics"):
                    continue  # the table above already lists them
                lines.append(f"{label}:")
                lines += [f"- {name}: {_num(value)}" for name, value, *_ in bars]
                lines.append("")
    return "\n".join(lines)


_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:920px;margin:2em auto;padding:0 1em;"
    "color:#1d2430}table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid"
    " #ccd;padding:.25em .6em;text-align:left;font-size:14px}h1{font-size:1.6em}h2{border-"
    "bottom:1px solid #dde;padding-bottom:.2em}pre{background:#f4f6f8;padding:.6em;"
    "overflow-x:auto}svg{display:block;margin:.5em 0 1em}"
)


def render_html(title: str, sections: list[Section]) -> str:
    """The sections as one self-contained HTML page (inline CSS and SVG, no scripts)."""
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for heading, blocks in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        for kind, content in blocks:
            if kind == "p":
                parts.append(f"<p>{html.escape(str(content))}</p>")
            elif kind == "ul":
                parts.append(
                    "<ul>" + "".join(f"<li>{html.escape(str(i))}</li>" for i in content) + "</ul>"
                )
            elif kind == "code":
                parts.append(f"<pre><code>{html.escape(str(content))}</code></pre>")
            elif kind == "table":
                head, rows = content
                header = (
                    "<thead><tr>"
                    + "".join(f"<th>{html.escape(str(h))}</th>" for h in head)
                    + "</tr></thead>"
                    if any(head)
                    else ""
                )
                parts.append(
                    f"<table>{header}<tbody>"
                    + "".join(
                        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                        for row in rows
                    )
                    + "</tbody></table>"
                )
            elif kind == "bars":
                parts.append(_bars_svg(*content))
    parts.append("</body></html>")
    return "".join(parts)


def _bars_svg(label: str, bars: list[tuple[str, float, float | None, float | None]]) -> str:
    """Horizontal bars with optional interval whiskers, as inline SVG."""
    bars = [b for b in bars if b[1] is not None and math.isfinite(b[1])][:20]
    if not bars:
        return ""
    top = max(max(b[1], b[3] if b[3] is not None else b[1]) for b in bars)
    top = top if top > 0 else 1.0
    width, bar_h, gap, label_w = 620, 18, 6, 230
    scale = (width - label_w - 70) / top
    items = []
    for i, (name, value, low, high) in enumerate(bars):
        y = i * (bar_h + gap)
        items.append(
            f'<text x="0" y="{y + 13}" font-size="12">{html.escape(str(name)[:34])}</text>'
            f'<rect x="{label_w}" y="{y}" width="{max(1.0, value * scale):.1f}"'
            f' height="{bar_h}" fill="#3b6ea5"/>'
        )
        right = value
        if low is not None and high is not None and math.isfinite(low) and math.isfinite(high):
            right = max(value, high)
            items.append(
                f'<line x1="{label_w + low * scale:.1f}" x2="{label_w + high * scale:.1f}"'
                f' y1="{y + bar_h / 2}" y2="{y + bar_h / 2}" stroke="#111" stroke-width="2"/>'
            )
        items.append(
            f'<text x="{label_w + right * scale + 6:.1f}" y="{y + 13}" font-size="12">'
            f"{value:.4g}</text>"
        )
    return (
        f'<svg role="img" aria-label="{html.escape(label)}" width="{width}"'
        f' height="{len(bars) * (bar_h + gap)}" xmlns="http://www.w3.org/2000/svg">'
        + "".join(items)
        + "</svg>"
    )


def _model_type(report: Any) -> str:
    """The candidate's name; for an ensemble, its members and their weights."""
    candidate = report.model.candidate
    spec = (report.tuning or {}).get(candidate, {}).get("best_params") or {}
    members = spec.get("members") if isinstance(spec, dict) else None
    if not members:
        return candidate
    parts = ", ".join(f"{m['name']} × {float(m['weight']):.2f}" for m in members)
    # classifiers sum log-odds; a model without classes (regression) sums predictions
    averaged = "log-odds" if report.data.get("class_balance") else "predictions"
    return f"{candidate} of {len(members)} models ({averaged} averaged: {parts})"
