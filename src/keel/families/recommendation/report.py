"""Report, model card and validation page of a recommender, from its run document.

One JSON document (what ``keel run --json`` prints and MLflow keeps as
``report.json``) holds every number; the report, the card and the validation page are
sections rendered from it as HTML (inline SVG, no scripts) and Markdown, so they
cannot disagree. The card follows the organisation's recommender layout: model
details, intended use, training data, evaluation protocol, NDCG@10 / MAP@10 with
intervals, cold-start measured, fairness across user groups, exposure, serving
latency, A/B test results, limitations.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from keel.reports import atomic_write, metric_label
from keel.reports._card import (
    Section,
    ab_test_blocks,
    render_html,
    render_markdown,
    resource_table,
)

label = metric_label

# (method, path, scope, what) of the served app; a unit test holds them against it
RECOMMENDER_ENDPOINTS = (
    ("POST", "/recommend", "predict", "top-K items of a user or a history"),
    ("POST", "/feedback", "predict", "consumed items and outcomes for answered requests"),
    ("GET", "/model", "predict", "name, version, semantic version, catalogue size"),
    ("GET", "/health", None, "liveness"),
    ("GET", "/ready", None, "readiness: the model answered its self-test"),
    ("GET", "/metrics", "admin", "Prometheus metrics"),
    ("GET", "/dashboard", "admin", "monitoring dashboard of this server's log"),
    ("GET", "/experiment", "predict", "the running A/B test, if any"),
)


def _n(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.{digits}f}"
    return str(value)


def _ci(interval: dict[str, float] | None) -> str:
    if not interval:
        return "n/a"
    return f"{_n(interval['value'])} (95% CI {_n(interval['low'])} to {_n(interval['high'])})"


def _metric_table(doc: dict[str, Any], key: str, metrics: list[str]) -> tuple:
    head = ["model", *metrics]
    rows = []
    for c in doc["candidates"]:
        values = c.get(key) or {}
        mark = " (chosen)" if c["name"] == doc["chosen"] else ""
        rows.append([f"{c['name']}{mark}", *[_n(values.get(m, float("nan"))) for m in metrics]])
    return head, rows


def _headline(doc: dict[str, Any]) -> list[str]:
    k = 10 if 10 in doc["ks"] else max(doc["ks"])
    return [f"ndcg_at_{k}", f"map_at_{k}", "mrr", f"recall_at_{k}", f"hit_rate_at_{k}"]


def _protocol(doc: dict[str, Any]) -> list[str]:
    split = doc["protocol"]
    lines = [
        f"split: {split['strategy']} ({split['train']} training, {split['validation']}"
        f" validation, {split['test']} test interactions)",
        f"{split['test_users']} test users: {split['warm_test_users']} warm,"
        f" {split['cold_start_test_users']} cold-start (no history before the test period)",
        "ranking over the full catalogue: every item the user had not had in training;"
        " no sampled negatives (Krichene & Rendle, KDD 2020)",
        f"relevant: {doc['relevance']}",
    ]
    for name in ("validation_from", "test_from"):
        if name in split:
            lines.append(f"{name.replace('_', ' ')}: {split[name]}")
    return lines


def _fairness_blocks(fairness: dict[str, Any] | None) -> list[Any]:
    if not fairness:
        return [("p", "No user attributes configured: fairness was not assessed.")]
    blocks: list[Any] = []
    metrics = fairness["metrics"]
    for feature, detail in fairness["features"].items():
        rows = [
            [g["group"], g["users"], "yes" if g["judged"] else "no (too few users)"]
            + [_ci(g[m]) for m in metrics]
            for g in detail["groups"]
        ]
        blocks.append(("p", f"By {feature}:"))
        blocks.append((("table"), (["group", "users", "judged", *metrics], rows)))
        if detail["measures"]:
            blocks.append(("ul", [f"{k}: {_n(v)}" for k, v in sorted(detail["measures"].items())]))
    if fairness["checks"]:
        verdict = "passed" if fairness["passed"] else "FAILED"
        blocks.append(
            (
                "ul",
                [
                    f"{c['feature']} {c['measure']} {_n(c['value'])} (limit {c['kind']}"
                    f" {c['limit']:g}): {'passed' if c['passed'] else 'FAILED'}"
                    for c in fairness["checks"]
                ]
                + [f"fairness gate {verdict}"],
            )
        )
    else:
        blocks.append(("p", "Reported, not judged: no limits under fairness: in keel.yaml."))
    return blocks


def _exposure_blocks(exposure: dict[str, Any]) -> list[Any]:
    blocks: list[Any] = []
    for name, rows in exposure.items():
        blocks.append(
            ("p", f"Exposure by {name} (share of recommendation slots vs of interactions):")
        )
        blocks.append(
            (
                "bars",
                (
                    f"exposure ratio by {name} (1 = proportional)",
                    [(r["group"], r["exposure_ratio"], None, None) for r in rows[:20]],
                ),
            )
        )
        blocks.append(
            (
                "table",
                (
                    ["group", "recommended share", "interaction share", "exposure ratio"],
                    [
                        [
                            r["group"],
                            _n(r["recommended_share"]),
                            _n(r["interaction_share"]),
                            _n(r["exposure_ratio"], 2),
                        ]
                        for r in rows[:20]
                    ],
                ),
            )
        )
    return blocks


def _explanation_blocks(explanations: dict[str, Any]) -> list[Any]:
    blocks: list[Any] = []
    mix = explanations.get("mix", {})
    if mix:
        blocks.append(("ul", [f"{k.replace('_', ' ')}: {_n(v, 1)}" for k, v in mix.items()]))
    for user in explanations.get("users", []):
        kind = "cold-start" if user["cold_start"] else f"{user['history_size']} items in history"
        blocks.append(
            (
                "p",
                f"User {user['user_id']} ({kind}); recently:"
                f" {', '.join(user['history'][:5]) or '-'}",
            )
        )
        rows = [
            [
                r["item"],
                _n(r["score"], 3),
                ", ".join(f"{b['item']} ({b['weight']:.3f})" for b in r["because"]) or "popularity",
            ]
            for r in user["recommendations"]
        ]
        blocks.append(("table", (["recommended", "score", "because of"], rows)))
    return blocks


def _summary_section(doc: dict[str, Any]) -> Section:
    primary = doc["primary_metric"]
    gate = doc.get("gate") or {}
    champion = (doc.get("versus_champion") or {}).get("reason") or "no champion yet"
    lines = [
        f"model: {doc['name']} version {doc.get('version', '-')}, chosen candidate {doc['chosen']}",
        f"{primary} on test: {_ci(doc['intervals'].get(primary))}",
        gate.get("describe", "baseline gate: not run"),
        f"fairness: {doc.get('fairness_verdict', 'not assessed')}",
        "against the champion: " + champion,
        f"alias: {doc.get('alias') or 'none'}",
    ]
    return ("Summary", [("ul", lines)])


def _every_model_sections(doc: dict[str, Any]) -> list[Section]:
    headline = _headline(doc)
    primary = doc["primary_metric"]
    bars = [
        (c["name"], c["test"].get(primary, float("nan")), None, None) for c in doc["candidates"]
    ]
    return [
        (
            "Every model on test (all users)",
            [
                ("table", _metric_table(doc, "test", headline)),
                ("bars", (f"test {primary} by model", bars)),
            ],
        ),
        (
            "Warm users (history before the test period)",
            [("table", _metric_table(doc, "test_warm", headline))],
        ),
        (
            "Cold-start users (no history: popularity fallback)",
            [("table", _metric_table(doc, "test_cold", headline))],
        ),
        (
            "Validation (what tuning and the choice saw)",
            [("table", _metric_table(doc, "validation", headline))],
        ),
    ]


def _chosen_section(doc: dict[str, Any]) -> Section:
    intervals = [[label(m), _ci(v)] for m, v in sorted(doc["intervals"].items())]
    beyond = [[label(m), _n(doc["beyond"][m])] for m in sorted(doc.get("beyond", {}))]
    return (
        "Chosen model: intervals and beyond accuracy",
        [
            ("table", (["metric", "value (95% CI over users)"], intervals)),
            ("table", (["measure", "value"], beyond)),
            *_cold_start_blocks(doc),
            *_ann_blocks(doc),
        ],
    )


def _ann_blocks(doc: dict[str, Any]) -> list[Any]:
    """How the chosen model's lists are served: its HNSW index and the recall measured."""
    ann = doc.get("ann")
    if not ann:
        return []
    if "tried" not in ann:
        return [("p", f"Approximate index: not built ({ann.get('reason', 'unknown')}).")]
    verdict = "serves the lists" if ann["used"] else "not used: below the floor, exact lists"
    return [
        (
            "p",
            f"Approximate index (HNSW over {ann['items']:,} items, {ann['dimensions']}"
            f" dimensions, built in {ann['build_seconds']} s) {verdict}: recall@10 of the"
            f" exact list {ann['recall_at_10']} on {ann['sampled_users']} users at efSearch"
            f" {ann['ef_search']} (floor {ann['min_recall']}).",
        ),
        (
            "table",
            (
                ["efSearch", "recall@10", "ms per user"],
                [[t["ef_search"], t["recall_at_10"], t["ms_per_user"]] for t in ann["tried"]],
            ),
        ),
    ]


def _cold_start_blocks(doc: dict[str, Any]) -> list[Any]:
    """Cold-start users: their segment's popularity against the global list."""
    gain = doc.get("cold_start")
    if not gain:
        return []
    seg, glob = gain["segment_popularity"], gain["global_popularity"]
    rows = [[label(m), _n(seg[m]), _n(glob[m]), f"{seg[m] - glob[m]:+.4f}"] for m in sorted(seg)]
    return [
        (
            "p",
            f"Cold start: {gain['users']} test users with no history;"
            f" {gain['with_segment']} placed in one of {gain['segments']} segments by"
            f" {', '.join(gain['attributes'])}.",
        ),
        ("table", (["metric", "segment popularity", "global popularity", "gain"], rows)),
    ]


def _tuning_section(doc: dict[str, Any]) -> Section:
    rows = [
        [
            name,
            t["trials"],
            t.get("skipped_trials", 0),
            _n(t["best_score"]),
            ", ".join(f"{k}={_n(v, 4)}" for k, v in t["best_params"].items()),
        ]
        for name, t in doc.get("tuning", {}).items()
    ]
    head = ["candidate", "trials", "not started (budget)", "best validation", "best parameters"]
    blocks: list[Any] = [("table", (head, rows))]
    skipped = doc.get("skipped") or {}
    if skipped:
        blocks.append(("p", "Candidates skipped before training, with the estimate that decided:"))
        blocks.append(
            (
                "table",
                (
                    ["candidate", "why", "estimated seconds", "estimated MB"],
                    [
                        [n, s["reason"], s["estimate"]["seconds"], s["estimate"]["megabytes"]]
                        for n, s in skipped.items()
                    ],
                ),
            )
        )
    budget = doc.get("budget") or {}
    if budget:
        blocks.append(
            (
                "p",
                f"Budget: {budget['seconds']:g} s for the whole run"
                if budget.get("trials") is None
                else f"Trials: {budget['trials']} per candidate",
            )
        )
    return ("Tuning", blocks)


def report_sections(doc: dict[str, Any]) -> list[Section]:
    """The evaluation report of a recommender run."""
    sections: list[Section] = [
        _summary_section(doc),
        ("Protocol", [("ul", _protocol(doc))]),
        *_every_model_sections(doc),
        _chosen_section(doc),
        ("Fairness across user groups", _fairness_blocks(doc.get("fairness"))),
        ("Item exposure", _exposure_blocks(doc.get("exposure", {}))),
        ("Explanations", _explanation_blocks(doc.get("explanations", {}))),
        _tuning_section(doc),
    ]
    if doc.get("robustness"):
        sections.append(("Robustness", robustness_blocks(doc["robustness"])))
    if doc.get("resources"):
        sections.append(
            (
                "Resources per stage (this run, up to the report)",
                [("table", resource_table(doc["resources"]))],
            )
        )
    return sections


def robustness_blocks(found: dict[str, Any]) -> list[Any]:
    """The shilling test: its sentence, its numbers, its verdict."""
    attack = found.get("shilling") or {}
    blocks: list[Any] = [("ul", list(found.get("summary") or []))]
    if attack:
        blocks.append(
            (
                "table",
                (
                    ["measure", "value"],
                    [
                        ["pushed item", attack["target_item"]],
                        ["fake users", attack["fake_users"]],
                        ["exposure before", _n(attack["exposure_before"])],
                        ["exposure after", _n(attack["exposure_after"])],
                        ["gain", _n(attack["gain"])],
                    ],
                ),
            )
        )
    blocks.append(("p", f"Robustness gate: {found.get('verdict', 'not judged')}."))
    return blocks


def validation_sections(doc: dict[str, Any]) -> list[Section]:
    """The data checks and profile of the interactions."""
    checks = doc["data"]["checks"]
    profile = doc["data"]["profile"]
    return [
        (
            "Checks",
            [
                (
                    "table",
                    (
                        ["check", "result"],
                        [
                            [k.replace("_", " "), "n/a (no table)" if v is None else v]
                            for k, v in checks.items()
                        ],
                    ),
                )
            ],
        ),
        (
            "Profile",
            [
                (
                    "ul",
                    [
                        f"{profile['interactions']} interactions of {profile['users']} users with"
                        f" {profile['items']} items (density {profile['density']:.4f})",
                        f"from {profile['first_time']} to {profile['last_time']}"
                        f" ({profile['days']} days)",
                        f"popularity head ({profile['head_items']} items, the top fifth) holds"
                        f" {profile['head_share_of_interactions']:.1%} of interactions; Gini"
                        f" {profile['popularity_gini']:.3f}",
                        f"share of interactions that are relevant: {profile['relevant_share']:.1%}",
                    ],
                ),
                (
                    "table",
                    (
                        ["per", *profile["per_user"].keys()],
                        [
                            ["user", *[_n(v, 1) for v in profile["per_user"].values()]],
                            ["item", *[_n(v, 1) for v in profile["per_item"].values()]],
                        ],
                    ),
                ),
                (
                    "bars",
                    (
                        "interactions per item, most popular first (long tail)",
                        [
                            (f"#{i * max(1, profile['items'] // 100) + 1}", float(v), None, None)
                            for i, v in enumerate(profile["popularity_curve"][:20])
                        ],
                    ),
                ),
            ],
        ),
    ]


def _card_limitations(doc: dict[str, Any], k: int) -> list[str]:
    """What people wrote, and what the run measured: cold start, gaps, baselines, gates."""
    limitations = list(doc.get("card", {}).get("limitations", []))
    warm, cold = doc.get("warm", {}), doc.get("cold", {})
    ndcg, recall = f"ndcg_at_{k}", f"recall_at_{k}"
    users = doc["protocol"].get("cold_start_test_users", 0)
    if users and cold and warm:
        lower = "lower" if cold.get(ndcg, 0) < warm.get(ndcg, 0) else "not lower"
        limitations.append(
            f"New users (cold start) get the popularity list, not a personal one: {ndcg}"
            f" {_n(cold.get(ndcg))} and {recall} {_n(cold.get(recall))} for {users}"
            f" cold-start test users vs {_n(warm.get(ndcg))} and {_n(warm.get(recall))} for"
            f" warm users ({ndcg} {lower} for them)."
        )
    gain = doc.get("cold_start")
    if gain:
        metric = gain["metric"]
        limitations.append(
            f"Cold-start users get the popularity of their segment"
            f" ({', '.join(gain['attributes'])}; {gain['segments']} segments):"
            f" {metric} {_n(gain['segment_popularity'][metric])} vs"
            f" {_n(gain['global_popularity'][metric])} with the global list, for"
            f" {gain['users']} cold-start test users ({gain['with_segment']} placed in a"
            f" segment), a gain of {gain['gain']:+.4f}."
        )
    fairness = doc.get("fairness") or {}
    for feature, detail in fairness.get("features", {}).items():
        gap = detail["measures"].get("ndcg_difference")
        if gap is not None and gap > 0.1:
            limitations.append(f"{ndcg} differs by {gap:.3f} across {feature} groups.")
    chosen_test = doc["metrics"].get(ndcg, float("nan"))
    for c in doc["candidates"]:
        if c["kind"] == "baseline" and c["test"].get(ndcg, float("-inf")) > chosen_test:
            limitations.append(
                f"The {c['name']} baseline scores higher on test {ndcg}"
                f" ({_n(c['test'][ndcg])} vs {_n(chosen_test)}): consider it, or more data."
            )
    gate = doc.get("gate") or {}
    if gate and not gate.get("passed"):
        limitations.append("The model does not beat the popularity baseline on the interval.")
    return limitations


def _card_details(doc: dict[str, Any]) -> Section:
    card = doc.get("card", {})
    lines = [
        f"{doc['name']} version {doc.get('version', '-')}"
        f" (semantic version {doc.get('semver') or 'none'}): {doc['chosen']}"
        f" recommender ({doc.get('chosen_description', '')})",
        f"owners: {', '.join(card.get('owners', [])) or 'not given (card.owners)'}",
        f"created {doc.get('created', '')}; run {doc.get('run_id', '')}",
        f"data digest {doc['data']['digest']}",
    ]
    return ("Model details", [("ul", lines)])


def _card_use_and_data(doc: dict[str, Any]) -> list[Section]:
    card = doc.get("card", {})
    data = doc["data"]["profile"]
    use: list[Any] = [
        ("p", card.get("intended_use") or "Not given (card.intended_use in keel.yaml).")
    ]
    if card.get("out_of_scope"):
        use.append(("ul", card["out_of_scope"]))
    lines = [
        f"{data['interactions']} interactions, {data['users']} users,"
        f" {data['items']} items, {data['first_time'][:10]} to"
        f" {data['last_time'][:10]}",
        *_protocol(doc),
    ]
    return [("Intended use", use), ("Training data", [("ul", lines)])]


def _card_performance(doc: dict[str, Any], k: int) -> Section:
    intervals = doc["intervals"]
    warm, cold = doc.get("warm", {}), doc.get("cold", {})
    ndcg, map_ = f"ndcg_at_{k}", f"map_at_{k}"
    metrics = (ndcg, map_, "mrr", f"recall_at_{k}", f"precision_at_{k}", f"hit_rate_at_{k}")
    rows = [
        [
            label(m),
            _ci(intervals.get(m)),
            _n(warm.get(m, float("nan"))),
            _n(cold.get(m, float("nan"))),
        ]
        for m in metrics
    ]
    gate = doc.get("gate") or {}
    return (
        "Performance",
        [
            ("table", (["metric", "all test users", "warm users", "cold-start users"], rows)),
            *_cold_start_blocks(doc),
            ("p", gate.get("describe", "baseline gate: not run")),
            ("table", _metric_table(doc, "test", [ndcg, map_])),
        ],
    )


def _card_serving(doc: dict[str, Any]) -> list[Section]:
    latency = doc.get("serving_latency")
    measured = (
        f"p95 latency {latency['p95_ms']:.1f} ms at concurrency"
        f" {latency['concurrency']}"
        f" ({latency['requests']} requests, keel loadtest)"
        if latency
        else "Latency not measured yet: run `keel loadtest` against `keel serve`."
    )
    robustness = (
        robustness_blocks(doc["robustness"])
        if doc.get("robustness")
        else [("p", "Not measured (robustness.enabled: false).")]
    )
    return [("Serving", [("p", measured)]), ("Robustness", robustness)]


def _card_rollback(doc: dict[str, Any]) -> Section:
    lines = [
        f"`keel rollback {doc['name']}` moves champion back to the previous"
        " version; a running `keel serve` follows the alias and swaps models"
        " once the other version answers its self-test.",
        f"`keel history {doc['name']}` lists every alias move (who, when, why).",
        f"`keel serve --model {doc['name']}/VERSION` serves one version pinned.",
    ]
    return ("Rollback", [("ul", lines)])


def _card_closing(doc: dict[str, Any], k: int) -> list[Section]:
    ethics = doc.get("card", {}).get("ethical_considerations") or [
        "Recommendations shape what users see: the exposure above shows which"
        " items gain or lose attention."
    ]
    companions = [
        "Runbook (serve, scale, roll back, alerts, contacts): runbook.md",
        "Impact assessment (uses, misuses, risks, mitigations): impact_assessment.md",
    ]
    return [
        ("Limitations", [("ul", _card_limitations(doc, k) or ["None detected or given."])]),
        ("Ethical considerations", [("ul", ethics)]),
        ("Companion documents", [("ul", companions)]),
    ]


def card_sections(doc: dict[str, Any]) -> list[Section]:
    """The model card, in the organisation's recommender layout."""
    k = 10 if 10 in doc["ks"] else max(doc["ks"])
    return [
        _card_details(doc),
        *_card_use_and_data(doc),
        _card_performance(doc, k),
        ("Fairness across user groups", _fairness_blocks(doc.get("fairness"))),
        ("Item exposure", _exposure_blocks(doc.get("exposure", {}))),
        *_card_serving(doc),
        ("A/B test results", ab_test_blocks(doc.get("ab_tests"))),
        _card_rollback(doc),
        *_card_closing(doc, k),
    ]


def recommender_measured(doc: dict[str, Any]) -> dict[str, Any]:
    """What a recommender's impact assessment weighs, from its run document."""
    k = 10 if 10 in doc.get("ks", []) else max(doc.get("ks") or [10])
    found = _card_limitations({**doc, "card": {}}, k)
    cold = [t for t in found if t.startswith("New users")]
    gaps = [t for t in found if "differs by" in t]
    robustness = doc.get("robustness") or {}
    return {
        "fairness_gaps": gaps,
        "weak_slices": [],
        "robustness": list(robustness.get("summary") or []),
        "cold_start": cold[0] if cold else None,
        "limitations": [t for t in found if t not in cold and t not in gaps],
    }


def datasheet_sections(doc: dict[str, Any], config: dict[str, Any]) -> list[Section]:
    """A recommender's datasheet: source, collection, data use, columns, personal data."""
    from keel.reports._card import data_use, feature_dictionary

    card = config.get("card") or {}
    roles = [
        (config.get("user_column"), "user id"),
        (config.get("item_column"), "item id"),
        (config.get("time_column"), "time"),
        (config.get("rating_column"), "rating"),
        *[(c, "user attribute (sensitive)") for c in config.get("sensitive_features") or []],
        (config.get("item_attribute"), "item attribute"),
    ]
    columns = [{"name": c, "kind": "", "role": role} for c, role in roles if c]
    pii = doc["data"].get("pii") or {}
    return [
        (
            "Source",
            [
                (
                    "ul",
                    [
                        f"source: {doc['data'].get('source', '')}",
                        f"content digest: {doc['data'].get('digest', '')}",
                        f"relevance: {doc.get('relevance', '')}",
                    ],
                )
            ],
        ),
        (
            "Collection",
            [
                (
                    "p",
                    card.get("data_collection")
                    or "Not stated (set card.data_collection in keel.yaml: who collected the"
                    " data, how, when, and with what consent).",
                )
            ],
        ),
        ("Data use", data_use(config.get("privacy"), config.get("serving"))),
        ("Feature dictionary", [("table", feature_dictionary(columns, config.get("features")))]),
        (
            "Personal data",
            [
                (
                    "ul",
                    [f"{table}: {json.dumps(found)[:300]}" for table, found in sorted(pii.items())]
                    or ["no table needed handling"],
                )
            ],
        ),
    ]


def write_recommender_governance(
    doc: dict[str, Any], config: dict[str, Any], folder: Path, registry: dict[str, Any]
) -> dict[str, str]:
    """A recommender's datasheet, runbook and impact assessment (``registry``: aliases)."""
    from keel.reports._governance import write_governance

    facts = {
        "name": doc["name"],
        "version": doc.get("version", "-"),
        "semver": doc.get("semver"),
        "task": "recommendation",
        "run_id": doc.get("run_id"),
        "endpoints": RECOMMENDER_ENDPOINTS,
        "offline": "Batch scoring without a server:"
        f" `keel recommend {doc['name']}@champion INPUT OUT`.",
        **registry,
    }
    sheet = folder / "datasheet.md"
    atomic_write(
        sheet,
        render_markdown(
            f"Datasheet: interactions of {facts['name']} version {facts['version']}",
            datasheet_sections(doc, config),
        ),
    )
    written = write_governance(folder, facts, config, recommender_measured(doc))
    return {"datasheet_md": str(sheet), **written}


def write_recommendation_reports(doc: dict[str, Any], folder: Path) -> dict[str, str]:
    """``report.{json,html}``, ``validation.html``, ``card.{md,html}`` in ``folder``."""
    name = f"{doc['name']} version {doc.get('version', '-')}"
    paths = {
        "json": folder / "report.json",
        "html": folder / "report.html",
        "validation": folder / "validation.html",
        "model_card_md": folder / "model_card.md",
        "model_card_html": folder / "model_card.html",
    }
    atomic_write(paths["json"], json.dumps(doc, indent=2, sort_keys=True, default=str))
    atomic_write(paths["html"], render_html(f"Recommender report: {name}", report_sections(doc)))
    atomic_write(
        paths["validation"], render_html(f"Interactions: {doc['name']}", validation_sections(doc))
    )
    card = card_sections(doc)
    atomic_write(paths["model_card_md"], render_markdown(f"Model card: {name}", card))
    atomic_write(paths["model_card_html"], render_html(f"Model card: {name}", card))
    return {k: str(v) for k, v in paths.items()}
