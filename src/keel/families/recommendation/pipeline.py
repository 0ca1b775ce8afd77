"""The stages of ``keel run`` for a recommender (``task: recommendation``).

The same runner, store, hooks and evidence as a tabular run, with the stages a
recommender needs: ingest (interactions, users, items) → pii → validate → split (by
time, cold-start users marked, leakage checked) → profile → tune (Optuna on validation
NDCG) → train (baselines and candidates; the best on validation is chosen, every model
refitted on train + validation) → evaluate (full ranking on test, intervals over users,
warm and cold apart, the popularity gate) → fairness (user groups, item exposure) →
explain → register → report → alias.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from keel.config import RECOMMENDER_BASELINES
from keel.errors import DataError, KeelError
from keel.pipeline._context import RunContext, now, protect_dataset
from keel.pipeline._package_stages import alias, run_record, still_registered
from keel.pipeline._stages import Graph, Stage, package_digest

DATA = ("keel.data", "keel.config", "keel.families.recommendation")
LEARN = (*DATA, "keel.tasks", "keel.families.tabular.training", "keel.evaluation")
JUDGE = (*LEARN, "keel.families.tabular.responsible")
RECORD = (*JUDGE, "keel.registry", "keel.reports")
GATE_BASELINE = "popularity"
EXPLAINED_USERS = 4


def _tables(ctx: RunContext) -> dict[str, Any]:
    config = ctx.config
    return {"data": config.data, "users": config.users, "items": config.items}


def ingest(inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Read the interactions and the users and items tables."""
    from keel.data import load_data

    config = ctx.config
    out = {}
    for key, spec in _tables(ctx).items():
        if spec is None:
            out[key] = None
            continue
        ctx.say(f"{key}: {spec if isinstance(spec, str) else 'query'}")
        out[key] = load_data(spec, config.root)
    return {"raw": out}


def tables_fingerprint(ctx: RunContext) -> str | None:
    """SHA-256 of every configured table file (``None`` for SQL or DVC: run)."""
    from keel.pipeline._context import file_digest as _file_digest

    digest = hashlib.sha256()
    for key, spec in _tables(ctx).items():
        if spec is None:
            continue
        one = _file_digest(ctx.config.table_path(spec), ctx.settings.stage_store)
        if one is None:
            return None
        digest.update(f"{key}:{one}".encode())
    return digest.hexdigest()


def pii(inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Rewrite personal data in every table as configured (presidio)."""
    config = ctx.config
    tables, reports = {}, {}
    present = {str(c) for d in inputs["raw"].values() if d is not None for c in d.frame.columns}
    unknown = [c for c in config.pii.columns if c not in present]
    if unknown:
        raise DataError(
            f"key 'pii.columns': {unknown[0]!r} is not a column of the interactions, users or"
            " items table"
        )
    for key, dataset in inputs["raw"].items():
        if dataset is None:
            tables[key] = None
            continue
        ctx.say(f"scanning {key}")
        dataset, report = protect_dataset(dataset, config.pii, present_only=True)
        tables[key], reports[key] = dataset, report
    return {"tables": tables, "pii_report": reports}


def validate(inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Check the interactions and attribute tables; decide relevance and the metric."""
    from keel.families.recommendation.data import prepare_interactions
    from keel.families.recommendation.task import RECOMMENDATION

    config, tables = ctx.config, inputs["tables"]
    primary = RECOMMENDATION.primary_name(config.metric, config.k)
    interactions = prepare_interactions(
        tables["data"].frame,
        config,
        tables["users"].frame if tables["users"] is not None else None,
        tables["items"].frame if tables["items"] is not None else None,
        label=config.data_label,
    )
    ctx.say(f"{interactions.n_rows} interactions")
    return {"interactions": interactions, "primary": primary}


def split(inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Cut train / validation / test by ``split.strategy``; prove nothing leaked."""
    from keel.families.recommendation.data import leaked, split_interactions

    s = ctx.config.split
    splits = split_interactions(inputs["interactions"], s.strategy, s.validation, s.test)
    problems = leaked(splits)
    if problems:  # a bug in the split, never the user's data
        raise KeelError(f"the {s.strategy} split leaked: {'; '.join(problems)}")
    ctx.say(
        f"{splits.report['warm_test_users']} warm, {splits.report['cold_start_test_users']}"
        " cold-start test users"
    )
    return {"splits": splits}


def profile(inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Interactions per user and item, the long tail, the time span."""
    from keel.families.recommendation.data import profile_interactions

    return {"profile": profile_interactions(inputs["interactions"])}


def catalogue(inputs: dict[str, Any], ctx: RunContext) -> Any:
    """The items table and keel.yaml's business rules every fitted model carries."""
    from keel.families.recommendation.rules import Catalogue, ItemRules, RuleError

    config = ctx.config
    section = config.section
    rules = section.rules.model_dump(mode="json") if section is not None else {}
    cold = section.cold_start if section is not None else None
    users = inputs["interactions"].users
    wanted = tuple(cold.user_attributes) if cold is not None else ()
    missing = [a for a in wanted if users is None or a not in users.columns]
    if missing:
        columns = ", ".join(map(str, users.columns)) if users is not None else "no users table"
        raise DataError(
            f"keel.yaml recommend.cold_start.user_attributes: {missing[0]!r} is not a column"
            f" of the users table ({columns})"
        )
    found = Catalogue(
        inputs["interactions"].items,
        config.attribute_separator,
        rules,
        users,
        wanted,
        cold.min_users if cold is not None else 20,
    )
    if rules.get("never_where") or rules.get("cap"):
        ids = found.table.index.to_numpy() if found.table is not None else np.zeros(0, str)
        try:  # an attribute the items table lacks, a wrong type: one line naming the rule
            ItemRules.resolve(rules, ids, found.attributes(ids))
        except RuleError as exc:
            raise DataError(f"keel.yaml {exc}") from None
    return found


@dataclass
class _Costs:
    """The shapes a run's fits see and what its trials measured (for the budget)."""

    train: Any
    fit: Any
    validation_users: int
    test_users: int
    models: int
    baselines: int
    measured: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def trial(self, name: str, params: dict[str, Any]) -> float:
        """Estimated seconds of one trial: fit on train, rank the validation users."""
        from keel.families.recommendation.estimate import estimate_fit, scoring_seconds

        fit = estimate_fit(name, params, self.train).seconds
        return fit + scoring_seconds(self.validation_users, self.train.items)

    def after_tuning(self, chosen: dict[str, dict[str, Any]], robustness: bool) -> float:
        """Seconds the stages after tuning need: refits, evaluation, robustness, the rest."""
        from keel.families.recommendation.estimate import (
            calibrated,
            estimate_fit,
            prepare_seconds,
            record_seconds,
            scoring_seconds,
        )

        refits = [
            calibrated(estimate_fit(n, p, self.fit).seconds, self.measured.get(n, []))
            for n, p in chosen.items()
        ]
        # every model ranks the test users; the baselines also rank the validation users
        # (a tuned candidate's validation metrics come from tuning)
        evaluation = self.models * scoring_seconds(self.test_users, self.fit.items)
        evaluation += self.baselines * scoring_seconds(self.validation_users, self.fit.items)
        # robustness refits the chosen model on a new frame (the fakes added): the frame
        # is copied and joined, then built into a matrix
        attack = max(refits, default=0.0) + 4 * prepare_seconds(self.fit) if robustness else 0.0
        return (
            sum(refits) + prepare_seconds(self.fit) + attack + evaluation + record_seconds(self.fit)
        )


def tune(inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Tune every candidate on validation ``primary`` (train → validation), within budget.

    ``budget:`` is the wall time of the whole run. Before a candidate is tuned its fit is
    estimated (:mod:`~keel.families.recommendation.estimate`); one that would not fit
    the machine's memory, or (without ``trials:``) the time its share of the budget
    leaves, is **skipped** with the estimate and the reason. The candidates left share
    what the budget leaves after the later stages' estimated needs (refits, evaluation,
    robustness), re-estimated after every trial from the measured trials.
    """
    from keel.families.recommendation.estimate import (
        Shape,
        available_bytes,
        calibrated,
        estimate_fit,
        too_big,
    )
    from keel.families.recommendation.models import DEFAULT_RECOMMENDER_PARAMS
    from keel.families.recommendation.train import tune_recommender

    config, splits, primary = ctx.config, inputs["splits"], inputs["primary"]
    fixed = inputs["fixed_params"] or {}
    costs = _Costs(
        Shape.of(splits.train),
        Shape.of(splits.fit),
        int(splits.validation["user"].nunique()),
        int(splits.test["user"].nunique()),
        len(config.models),
        len(config.models) - len(config.candidates),
    )
    memory = available_bytes()
    run_ends = ctx.started + config.budget
    timed = config.trials is None
    items = catalogue(inputs, ctx)
    tuned: dict[str, Any] = {}
    skipped: dict[str, dict[str, Any]] = {}
    chosen = {n: dict(fixed.get(n) or DEFAULT_RECOMMENDER_PARAMS[n]) for n in config.candidates}
    for name in config.candidates:  # what does not fit the machine never starts
        estimate = estimate_fit(name, chosen[name], costs.fit)
        reason = too_big(estimate, memory)
        if reason is not None:
            skipped[name] = {"reason": f"memory: {reason}", "estimate": estimate.to_dict()}
            ctx.say(f"{name}: skipped ({skipped[name]['reason']})")
    waiting = [n for n in config.candidates if n not in skipped and n not in fixed]
    robust = bool(config.robustness.enabled)
    for index, name in enumerate(waiting):
        left = [n for n in config.candidates if n not in skipped]
        began = time.perf_counter()

        def deadline(began: float = began, share: int = len(waiting) - index, left=left) -> float:
            reserve = costs.after_tuning({n: chosen[n] for n in left}, robust)
            return began + (run_ends - reserve - began) / share

        first = calibrated(costs.trial(name, chosen[name]), costs.measured.get(name, []))
        room = deadline() - time.perf_counter()
        if timed and first > room and len(left) > 1:
            estimate = estimate_fit(name, chosen[name], costs.train)
            skipped[name] = {
                "reason": f"time: one fit and validation take about {first:.0f} s"
                f" ({estimate.basis}); the budget leaves it {max(room, 0):.0f} s",
                "estimate": estimate.to_dict(),
            }
            ctx.say(f"{name}: skipped ({skipped[name]['reason']})")
            continue
        ctx.say(f"{name}")

        def on_trial(trial: Any, best: float | None, name: str = name) -> None:
            ctx.say(f"{name} trial {trial.number}: {primary} {trial.score:.4f} (best {best:.4f})")

        tuned[name] = tune_recommender(
            name,
            splits.train,
            splits.validation,
            config.k,
            primary,
            config.seed,
            config.budget,
            config.trials,
            on_trial,
            items,
            deadline=deadline,
            cost=lambda params, name=name: costs.trial(name, params),
        )
        done = [t for t in tuned[name].trials if t.state == "complete"]
        costs.measured[name] = [(t.seconds, costs.trial(name, t.params)) for t in done]
        if tuned[name].best_params:
            chosen[name] = dict(tuned[name].best_params)
    if len(skipped) == len(config.candidates):
        raise DataError(
            "no candidate fits: "
            + "; ".join(f"{n}: {s['reason']}" for n, s in skipped.items())
            + ". Use fewer interactions (or items), or a machine with more memory"
        )
    return {"tuned": tuned, "skipped": skipped}


def train(inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Every baseline and candidate: validated on train → validation, shipped on both.

    A candidate tuning measured keeps its validation metrics from tuning (the same fit
    on the same rows); the others are fitted on train and ranked on validation. Skipped
    candidates are not trained.
    """
    from keel.families.recommendation.ann import attach_index
    from keel.families.recommendation.config import AnnConfig
    from keel.families.recommendation.train import fit_model, tuned_validation, validation_metrics

    config, splits, primary = ctx.config, inputs["splits"], inputs["primary"]
    ann = config.section.ann if config.section is not None else AnnConfig()
    fixed = inputs["fixed_params"] or {}
    trained, models = [], {}
    items = catalogue(inputs, ctx)
    for name in config.models:
        if name in inputs["skipped"]:
            continue
        result = inputs["tuned"].get(name)
        params = fixed.get(name) or (result.best_params if result else {}) or {}
        if name not in RECOMMENDER_BASELINES and not params:
            from keel.families.recommendation.models import DEFAULT_RECOMMENDER_PARAMS

            params = dict(DEFAULT_RECOMMENDER_PARAMS[name])
        ctx.say(name)
        validation = tuned_validation(result, params)
        if validation is None:
            on_train = fit_model(name, params, splits.train, config.seed, items)
            validation = validation_metrics(on_train, splits.validation, config.k)
            del on_train
        started = time.perf_counter()
        models[name] = fit_model(name, params, splits.fit, config.seed, items)
        fit_seconds = time.perf_counter() - started
        index = attach_index(models[name], ann.min_items, ann.min_recall, config.seed)
        if index is not None:
            ctx.say(f"{name}: HNSW index, recall@10 {index.get('recall_at_10')}")
        trained.append(
            {
                "name": name,
                "kind": "baseline" if name in RECOMMENDER_BASELINES else "candidate",
                "params": params,
                "validation": validation,
                "fit_seconds": fit_seconds,
                **({"ann": index} if index is not None else {}),
            }
        )
    contenders = [t for t in trained if t["kind"] == "candidate"]
    best = max(contenders, key=lambda t: t["validation"][primary])["name"]
    ctx.say(f"chosen: {best}")
    return {"trained": trained, "models": models, "best": best}


def _item_context(inputs: dict[str, Any], ctx: RunContext, model: Any) -> tuple:
    from keel.families.recommendation.responsible import attribute_matrix, item_groups

    config, data = ctx.config, inputs["interactions"]
    groups = item_groups(model, data.items, config.item_attribute, config.attribute_separator)
    attributes = (
        attribute_matrix(groups[config.item_attribute]) if config.item_attribute in groups else None
    )
    return groups, attributes


def evaluate(inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Every model on the test period over the full catalogue; the popularity gate."""
    from keel.evaluation import baseline_gate, paired_difference
    from keel.evaluation._ranking import mean_intervals
    from keel.families.recommendation.task import evaluate_ranking

    config, splits, primary = ctx.config, inputs["splits"], inputs["primary"]
    models, best = inputs["models"], inputs["best"]
    results, tests = {}, {}
    for name, model in models.items():
        ctx.say(name)
        _, attributes = _item_context(inputs, ctx, model)
        result = evaluate_ranking(model, splits.test, config.k, attributes)
        results[name] = result
        warm, cold = np.flatnonzero(~result.cold), np.flatnonzero(result.cold)
        tests[name] = {
            "test": result.means(),
            "test_warm": result.means(warm),
            "test_cold": result.means(cold),
            "beyond": result.beyond,
        }
    chosen, baseline = results[best], results[GATE_BASELINE]
    cold_start = _cold_start_gain(models[best], chosen, splits.test, config.k, primary)
    resamples = config.fairness.resamples or 200
    difference = paired_difference(
        lambda rows: float(np.mean(chosen.per_user[primary][rows])),
        lambda rows: float(np.mean(baseline.per_user[primary][rows])),
        len(chosen.user_ids),
        resamples=resamples,
        seed=config.seed,
    )
    gate = baseline_gate(primary, True, best, GATE_BASELINE, difference, config.gate_margin)
    assessment = {
        "intervals": {
            k: v.to_dict()
            for k, v in mean_intervals(chosen.per_user, resamples, config.seed).items()
        },
        "gate": {
            **gate.to_dict(),
            "describe": gate.describe().replace("best baseline", "baseline"),
        },
        "tests": tests,
        "cold_start": cold_start,
    }
    return {"assessment": assessment, "result": chosen}


def _cold_start_gain(model: Any, result: Any, test: Any, ks: Any, primary: str) -> dict | None:
    """Cold-start test users with their segment's popularity vs the global list."""
    from keel.families.recommendation.task import evaluate_ranking

    if not model.segments.active or not result.cold.any():
        return None
    cold_ids = set(result.user_ids[result.cold])
    held = test[test["user"].astype(str).isin(cold_ids)]
    segmented = result.means(np.flatnonzero(result.cold))
    plain = evaluate_ranking(model, held, ks, segments=False).means()
    placed = model.segments.of_users(result.user_ids[result.cold])
    return {
        "users": int(result.cold.sum()),
        "with_segment": int((placed >= 0).sum()),
        "attributes": list(model.segments.attributes),
        "segments": len(model.segments.keys),
        "metric": primary,
        "segment_popularity": segmented,
        "global_popularity": plain,
        "gain": segmented[primary] - plain[primary],
    }


def fairness(inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Quality across user groups (and cold vs warm); item exposure."""
    from keel.families.recommendation.responsible import exposure, ranking_fairness, user_groups

    config, result = ctx.config, inputs["result"]
    model = inputs["models"][inputs["best"]]
    data = inputs["interactions"]
    k = 10 if 10 in config.k else max(config.k)
    groups = user_groups(result, data.users, config.sensitive_features, config.fairness)
    metrics = [f"ndcg_at_{k}", f"recall_at_{k}"]
    ctx.say(", ".join(groups.columns))
    report = ranking_fairness(result, groups, metrics, config.fairness, config.seed)
    item_groups, _ = _item_context(inputs, ctx, model)
    return {"fairness": report, "exposure": exposure(result.lists[:, :k], model, item_groups)}


def explain(inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """A few test users' lists with the history items behind each; the global mix."""
    from keel.families.recommendation.responsible import explain_lists, recommended_mix

    config, result = ctx.config, inputs["result"]
    model = inputs["models"][inputs["best"]]
    rng = np.random.default_rng(config.seed)
    warm = result.user_ids[~result.cold]
    cold = result.user_ids[result.cold]
    picked = list(rng.choice(warm, min(EXPLAINED_USERS - 1, len(warm)), replace=False))
    picked += list(cold[:1])
    data = inputs["interactions"]
    title = next(
        (
            c
            for c in ("title", "name", "movie_title")
            if data.items is not None and c in data.items.columns
        ),
        None,
    )
    k = 10 if 10 in config.k else max(config.k)
    return {
        "explanations": {
            "users": explain_lists(model, picked, 5, 3, data.items, title),
            "mix": recommended_mix(result.lists[:, :k], model, inputs["splits"].test),
        }
    }


def robustness(inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Shilling: fake users pushing one item, and how much that item's exposure gains."""
    from keel.families.recommendation.train import shilling_attack

    config = ctx.config
    settings = config.robustness
    if not settings.enabled:
        return {"robustness": None}
    best = inputs["best"]
    params = next(t["params"] for t in inputs["trained"] if t["name"] == best)
    k = 10 if 10 in config.k else max(config.k)
    ctx.say(f"{settings.shilling_share:.1%} fake users pushing one item; {best} refitted")
    attack = shilling_attack(
        best,
        params,
        inputs["splits"].fit,
        inputs["models"][best],
        settings.shilling_share,
        k,
        config.seed,
        catalogue=catalogue(inputs, ctx),
    )
    limit = settings.max_shilling_gain
    checks = []
    if limit is not None:
        checks.append(
            {
                "what": f"exposure gained by the pushed item at k={k}",
                "value": attack["gain"],
                "limit": limit,
                "passed": attack["gain"] <= limit,
            }
        )
    passed = all(c["passed"] for c in checks)
    summary = [
        f"{attack['fake_users']} fake users ({settings.shilling_share:.1%} of users, each"
        f" with {attack['profile_size']} items) pushing item {attack['target_item']} (median"
        f" popularity) move its exposure in top-{k} lists from {attack['exposure_before']:.1%}"
        f" to {attack['exposure_after']:.1%} of {attack['users_measured']} users"
        f" ({attack['gain']:+.1%})."
    ]
    return {
        "robustness": {
            "shilling": attack,
            "checks": checks,
            "judged": bool(checks),
            "passed": passed,
            "verdict": ("passed" if passed else "failed")
            if checks
            else "not judged (no limit set)",
            "summary": summary,
        }
    }


def _gates(inputs: dict[str, Any]) -> dict[str, str]:
    gate, fair = inputs["assessment"]["gate"], inputs["fairness"]
    found = inputs["robustness"]
    return {
        "baseline": "passed" if gate["passed"] else "failed",
        "fairness": ("passed" if fair["passed"] else "failed") if fair["judged"] else "not judged",
        "robustness": "not assessed"
        if found is None
        else (("passed" if found["passed"] else "failed") if found["judged"] else "not judged"),
    }


def document(inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """The run's one JSON document: the report, the card and ``keel run --json`` read it."""
    config = ctx.config
    assessment, best = inputs["assessment"], inputs["best"]
    tests, tuned = assessment["tests"], inputs["tuned"]
    chosen = tests[best]
    relevance = (
        f"{config.rating_column} >= {config.relevant_from:g}"
        if config.relevant_from is not None
        else "every interaction"
    )
    return {
        "name": config.name,
        "task": "recommendation",
        "created": now(),
        "primary_metric": inputs["primary"],
        "ks": list(config.k),
        "relevance": relevance,
        "protocol": inputs["splits"].report,
        "data": {
            "digest": inputs["tables"]["data"].digest,
            "source": config.data_label,
            "checks": inputs["interactions"].report,
            "profile": inputs["profile"],
            "pii": {
                k: v.to_dict() if hasattr(v, "to_dict") else str(v)
                for k, v in inputs["pii_report"].items()
            },
        },
        "chosen": best,
        "chosen_params": inputs["models"][best].recommender.params,
        "chosen_description": (type(inputs["models"][best].recommender).__doc__ or "")
        .strip()
        .splitlines()[0],
        "candidates": [{**t, **tests[t["name"]]} for t in inputs["trained"]],
        "metrics": chosen["test"],
        "warm": chosen["test_warm"],
        "cold": chosen["test_cold"],
        "cold_start": assessment.get("cold_start"),
        "ann": next((t.get("ann") for t in inputs["trained"] if t["name"] == best), None),
        "beyond": chosen["beyond"],
        "intervals": assessment["intervals"],
        "gate": assessment["gate"],
        "gates": _gates(inputs),
        "fairness": inputs["fairness"],
        "fairness_verdict": _gates(inputs)["fairness"],
        "exposure": inputs["exposure"],
        "explanations": inputs["explanations"],
        "tuning": {
            name: {
                "trials": sum(t.state == "complete" for t in r.trials),
                "skipped_trials": sum(t.state == "skipped" for t in r.trials),
                "best_score": r.best_score,
                "best_params": r.best_params,
                "seconds": r.seconds,
            }
            for name, r in tuned.items()
        },
        "skipped": inputs["skipped"],
        "budget": {"seconds": config.budget, "trials": config.trials},
        "robustness": inputs["robustness"],
        "card": config.card.model_dump(),
        "ab_test": None,
        "serving_latency": None,
    }


STAGE_TAG = "keel.stage.register"


def register(inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Snapshot the interactions, log the MLflow run, register the package (once per key)."""
    from keel.data import snapshot
    from keel.families.recommendation.package import log_recommender_package
    from keel.pipeline._package_stages import git_commit, registered_by_key
    from keel.registry import (
        assign_semver,
        ensure_experiment,
        mlflow_scope,
        recommender_interface,
        tracking,
    )

    config, settings = ctx.config, ctx.settings
    dataset = inputs["tables"]["data"]
    snapshot_path = snapshot(dataset, settings.data_store)
    for table in ("users", "items"):  # `keel reproduce` needs them as they were
        if inputs["tables"][table] is not None:
            snapshot(inputs["tables"][table], settings.data_store)
    doc = document(inputs, ctx)
    best = inputs["best"]
    with mlflow_scope(settings.tracking_uri) as client:
        experiment_id = ensure_experiment(client, config.name, settings.artifact_location)
        interface = recommender_interface(
            {"user_column": config.user_column, "item_column": config.item_column}
        )
        done = registered_by_key(client, config.name, ctx.key)
        if done is not None:
            ctx.run_id = done.run_id
            semver, _ = assign_semver(
                client, settings.tracking_uri, config.name, str(done.version), interface
            )
            doc |= {"run_id": done.run_id, "version": str(done.version), "semver": semver}
            return {"run": run_record(done.run_id, experiment_id, config.name, done.version, doc)}
        with tracking.start_run(experiment_id, f"keel-{best}") as run_id:
            ctx.run_id = run_id
            schema = _log_evidence(config, inputs, doc, snapshot_path, experiment_id)
            ref = log_recommender_package(
                inputs["models"][best],
                registered_name=config.name,
                metadata={
                    "task": "recommendation",
                    "schema": schema,
                    "candidate": best,
                    "ks": list(config.k),
                    "primary_metric": inputs["primary"],
                    "dataset_digest": dataset.digest,
                    "run_id": run_id,
                    "seed": config.seed,
                    "user_column": config.user_column,
                    "item_column": config.item_column,
                    "sensitive_features": list(config.sensitive_features),
                },
                files={
                    "profile.json": inputs["profile"],
                    "protocol.json": doc["protocol"],
                    "monitoring_reference.json": monitoring_reference(inputs, ctx),
                },
                version_tags={STAGE_TAG: ctx.key},
            )
            for tag, value in {
                "keel.dataset.digest": dataset.digest,
                "keel.gates": ", ".join(f"{k} {v}" for k, v in doc["gates"].items()),
            }.items():
                client.set_model_version_tag(ref.name, ref.version, tag, value)
            commit = git_commit(config.root)
            client.set_model_version_tag(
                ref.name, ref.version, "keel.commit", commit or "unknown (not a git checkout)"
            )
            semver, _ = assign_semver(
                client, settings.tracking_uri, ref.name, str(ref.version), interface
            )
            doc |= {"run_id": run_id, "version": ref.version, "semver": semver}
    return {"run": run_record(run_id, experiment_id, config.name, ref.version, doc)}


def monitoring_reference(inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """What ``keel monitor`` compares served windows with (stored in the package)."""
    from keel.families.recommendation.monitor import popularity_bands, shares
    from keel.families.recommendation.responsible import group_labels

    config = ctx.config
    model = inputs["models"][inputs["best"]]
    popularity = model.recommender.popularity
    bands = popularity_bands(popularity)
    k = 10 if 10 in config.k else max(config.k)
    lists = inputs["result"].lists[:, :k]
    data = inputs["interactions"]
    labels = group_labels(data.users, config.sensitive_features, config.fairness)
    return {
        "n_items": model.n_items,
        "item_band": {str(i): int(b) for i, b in zip(model.item_ids, bands, strict=True)},
        "recommended_shares": shares(bands[lists[lists >= 0]]),
        "interaction_shares": shares(bands, popularity),
        "user_groups": {f: {str(u): g for u, g in s.items()} for f, s in labels.items()},
    }


def _log_evidence(
    config: Any,
    inputs: dict[str, Any],
    doc: dict[str, Any],
    snapshot_path: Path,
    experiment_id: str,
) -> dict[str, Any]:
    """Log the run's evidence; return the interaction schema.

    Every model's nested run; parameters, metrics, tags, gate numbers, package checks,
    the dataset input and the documents of the run.
    """
    from keel.pipeline._package_stages import config_digest, git_commit, log_config
    from keel.registry import tracking

    dataset, best = inputs["tables"]["data"], inputs["best"]
    for c in doc["candidates"]:
        with tracking.start_run(experiment_id, c["name"], nested=True):
            tracking.log_params({f"model.{k}": v for k, v in c["params"].items()})
            tracking.log_metrics({f"val_{k}": v for k, v in c["validation"].items()})
            tracking.log_metrics({f"test_{k}": v for k, v in c["test"].items()})
            tracking.set_tag("keel.candidate", c["name"])
    tracking.log_params(
        {
            "seed": config.seed,
            "task": "recommendation",
            "candidate": best,
            "split.strategy": config.split.strategy,
            "split.validation": config.split.validation,
            "split.test": config.split.test,
            "k": ",".join(map(str, config.k)),
            **{f"model.{k}": v for k, v in inputs["models"][best].recommender.params.items()},
        }
    )
    tracking.log_metrics({f"test_{k}": v for k, v in doc["metrics"].items()})
    tracking.log_metrics({f"test_warm_{k}": v for k, v in doc["warm"].items()})
    tracking.log_metrics({f"test_cold_{k}": v for k, v in doc["cold"].items()})
    tracking.log_metrics({f"test_{k}": v for k, v in doc["beyond"].items()})
    for name, interval in doc["intervals"].items():
        tracking.log_metric(f"test_{name}_ci_low", interval["low"])
        tracking.log_metric(f"test_{name}_ci_high", interval["high"])
    schema = interaction_schema(config)
    tags = {
        "keel.task": "recommendation",
        "keel.dataset.digest": dataset.digest,
        "keel.split.digest": split_digest(inputs["splits"]),
        "keel.schema.digest": _digest(schema),
        "keel.config.digest": config_digest(config),
        "keel.gate.baseline": doc["gates"]["baseline"],
        "keel.gate.fairness": doc["gates"]["fairness"],
        **(
            {
                "keel.gate.robustness": doc["gates"]["robustness"],
                "keel.robustness.shilling": doc["robustness"]["summary"][0][:500],
            }
            if doc.get("robustness")
            else {}
        ),
        # where a failed run of this pipeline is reported (keel check)
        "keel.failure_alerts": ",".join(s.type for s in config.monitoring.sinks),
    }
    breaches = [c for c in doc["fairness"]["checks"] if not c["passed"]]
    if breaches:
        tags["keel.fairness.breaches"] = "; ".join(
            f"{c['feature']} {c['measure']} {c['value']:.4f} (limit {c['kind']} {c['limit']:g})"
            for c in breaches
        )[:5000]
    for feature, detail in doc["fairness"]["features"].items():
        for measure, value in detail["measures"].items():
            tracking.log_metric(f"fairness_{feature}_{measure}", value)
    gate = doc["gate"]["difference"]
    tracking.log_metric("gate_difference_low", gate["low"])
    tracking.log_metric("gate_difference_high", gate["high"])
    commit = git_commit(config.root)
    if commit:
        tags["mlflow.source.git.commit"] = commit
    checks = package_checks(inputs["models"][best])
    tags["keel.gate.feature_code"] = "passed" if all(checks.values()) else "failed"
    tags["keel.code.features"] = package_digest("keel.tasks")
    tracking.set_tags(tags)
    tracking.log_dict(checks, "package_checks.json")
    origin = dataset.lineage.get("kind") == "file"
    tracking.log_dataset(
        inputs["interactions"].frame,
        Path(dataset.source if origin else snapshot_path).resolve().as_uri(),
        Path(dataset.source).name if origin else f"{config.name}-interactions",
        "relevant",
        dataset.digest,
        {f"keel.source.{k}": str(v)[:5000] for k, v in dataset.lineage.items()},
    )
    log_config(config)
    tracking.log_dict(schema, "schema.json")
    tracking.log_dict(inputs["profile"], "profile.json")
    return schema


def package_checks(model: Any) -> dict[str, bool]:
    """What the shipped package must do, checked on it before it is registered.

    The recommender's analogue of the feature-code tests: the same lists twice, never a
    seen item, the same lists after a save and load (NumPy only), and a user with
    nothing at all gets the popularity list flagged cold.
    """
    import tempfile

    from keel.families.recommendation.task import RecommenderModel

    users = model.user_index(model.user_ids[: min(50, len(model.user_ids))])
    first, _, cold = model.rank(users, 10)
    again, _, _ = model.rank(users, 10)
    seen = model.histories(users).toarray() > 0
    with tempfile.TemporaryDirectory() as folder:
        model.save(folder)
        loaded = RecommenderModel.load(folder).rank(users, 10)[0]
    nobody = model.recommend("\x00keel-package-check", k=5)
    top = np.argsort(-model.recommender.popularity, kind="stable")[:5]
    return {
        "deterministic": bool(np.array_equal(first, again)),
        "never_recommends_seen_items": not bool(
            np.take_along_axis(seen, np.maximum(first, 0), 1)[first >= 0].any()
        ),
        "same_after_save_and_load": bool(np.array_equal(first, loaded)),
        "known_users_not_cold": not bool(cold.any()),
        "cold_start_flagged_with_popularity": bool(nobody["cold_start"])
        and [i["item_id"] for i in nobody["items"]] == list(model.item_ids[top]),
    }


def interaction_schema(config: Any) -> dict[str, Any]:
    """The interaction table's columns and roles: what ingest checks and serving needs."""
    roles = [
        ("user", config.user_column, "id"),
        ("item", config.item_column, "id"),
        ("time", config.time_column, "epoch seconds or date"),
        ("rating", config.rating_column, "number"),
    ]
    return {
        "kind": "interactions",
        "columns": [
            {"name": column, "role": role, "type": kind} for role, column, kind in roles if column
        ],
        "relevant_from": config.relevant_from,
        "users": {"table": bool(config.users), "sensitive_features": config.sensitive_features},
        "items": {"table": bool(config.items), "attribute": config.item_attribute},
        "request": "POST /recommend: user_id, k 1..1000, exclude and history of known item ids",
    }


def split_digest(splits: Any) -> str:
    """Digest of which interactions went to train, validation and test."""
    import pandas as pd

    from keel.data import content_digest

    parts = [
        frame.assign(part=name)
        for name, frame in (
            ("train", splits.train),
            ("validation", splits.validation),
            ("test", splits.test),
        )
    ]
    return content_digest(pd.concat(parts, ignore_index=True))


def _digest(document: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]


def _gates_pass(run: dict[str, Any]) -> bool:
    gates = run["report"]["gates"]
    return (
        gates["baseline"] == "passed"
        and gates["fairness"] != "failed"
        and gates.get("robustness") != "failed"
    )


def compare(inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Which alias the version takes: against the champion on the same test users.

    The champion's package ranks the same test users over the full catalogue; the new
    version becomes champion when the whole 95 % interval (users resampled) of the
    difference in the primary metric is above zero and no fairness limit fails.
    A champion that trained on this test period cannot be compared fairly: then the
    new version stays challenger, and the report says why.
    """
    from keel.evaluation import paired_difference
    from keel.families.recommendation.package import load_recommender
    from keel.families.recommendation.task import evaluate_ranking
    from keel.registry import CHALLENGER, CHAMPION, alias_version
    from keel.registry import mlflow_scope as scope

    config, settings, run = ctx.config, ctx.settings, inputs["run"]
    if not _gates_pass(run):
        return {"versus": None, "planned_alias": None}
    with scope(settings.tracking_uri) as client:
        champion = alias_version(client, config.name, CHAMPION)
        held = [
            a
            for a in (CHAMPION, CHALLENGER)
            if alias_version(client, config.name, a) == run["version"]
        ]
    if held:  # a resumed run: the version keeps its alias
        return {"versus": None, "planned_alias": held[0]}
    if champion is None:
        return {"versus": None, "planned_alias": CHAMPION}
    ctx.say(f"against the champion (version {champion}), on the same test users")
    other = load_recommender(f"{config.name}/{champion}", settings.tracking_uri).model
    test = inputs["splits"].test
    rows = other.user_index(test["user"])
    cols = other.item_columns(test["item"])
    known = (rows >= 0) & (cols >= 0)
    seen = np.asarray(other.history[rows[known], cols[known]]).ravel() > 0
    primary = inputs["primary"]
    if seen.any():
        reason = (
            f"version {champion} trained on {int(seen.sum())} interactions of this test"
            " period: no fair comparison, stays challenger (compare with `keel promote`)"
        )
        return {
            "versus": {"champion": champion, "promote": False, "reason": reason},
            "planned_alias": CHALLENGER,
        }
    mine = inputs["result"].per_user[primary]
    theirs = evaluate_ranking(other, test, config.k).per_user[primary]
    difference = paired_difference(
        lambda r: float(np.mean(mine[r])),
        lambda r: float(np.mean(theirs[r])),
        len(mine),
        resamples=config.fairness.resamples or 200,
        seed=config.seed,
    )
    promote = difference.low > 0
    reason = (
        f"{primary} {float(np.mean(mine)):.4f} vs champion version {champion}"
        f" {float(np.mean(theirs)):.4f} on the same {len(mine)} test users: difference"
        f" {difference.value:+.4f} (95% CI {difference.low:+.4f} to {difference.high:+.4f})"
        + (", promoted" if promote else ", not better beyond noise: stays challenger")
    )
    versus = {
        "champion": champion,
        "promote": bool(promote),
        "reason": reason,
        "difference": difference.to_dict(),
    }
    return {"versus": versus, "planned_alias": CHAMPION if promote else CHALLENGER}


def report(inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Report, validation page and model card (HTML and Markdown), logged on the run."""
    from keel.families.recommendation.report import (
        write_recommendation_reports,
        write_recommender_governance,
    )
    from keel.registry import mlflow_scope, tracking

    run = inputs["run"]
    doc = {
        **run["report"],
        "versus_champion": inputs["versus"],
        "alias": inputs["planned_alias"],
        "resources": ctx.resources(),
    }
    folder = ctx.settings.reports_dir / run["run_id"]
    written = write_recommendation_reports(doc, folder)
    written |= write_recommender_governance(
        doc,
        ctx.config.model_dump(mode="json"),
        folder,
        {
            "aliases": [inputs["planned_alias"]] if inputs["planned_alias"] else [],
            "created": now(),
            "tracking_uri": ctx.settings.tracking_uri,
        },
    )
    card_files = ("model_card", "runbook", "impact_assessment", "datasheet")
    with mlflow_scope(ctx.settings.tracking_uri) as client:
        for key, path in written.items():
            folder = "card" if key.startswith(card_files) else "reports"
            tracking.log_artifact(client, run["run_id"], path, folder)
    return {"reports": written}


def _reading_stages() -> list[Stage]:
    """Reading, checking, splitting, profiling, tuning and training."""
    any_ = object
    cut_keys = ("user_column", "item_column", "time_column", "rating_column", "relevant_from")
    return [
        Stage(
            "ingest",
            ingest,
            outputs={"raw": dict},
            reads=("data", "users", "items"),
            code=DATA,
            fingerprint=tables_fingerprint,
            persist=False,
        ),
        Stage("pii", pii, ("raw",), {"tables": dict, "pii_report": dict}, ("pii",), DATA),
        Stage(
            "validate",
            validate,
            ("tables",),
            {"interactions": any_, "primary": str},
            (*cut_keys, "sensitive_features", "item_attribute", "metric", "k"),
            (*DATA, "keel.tasks"),
        ),
        Stage("split", split, ("interactions",), {"splits": any_}, ("split",), DATA),
        Stage("profile", profile, ("interactions",), {"profile": dict}, (), DATA),
        Stage(
            "tune",
            tune,
            ("splits", "primary", "fixed_params", "interactions"),
            {"tuned": dict, "skipped": dict},
            (
                *("candidates", "budget", "trials", "seed", "k", "attribute_separator"),
                *("recommend", "robustness.enabled"),
            ),
            LEARN,
        ),
        Stage(
            "train",
            train,
            ("splits", "primary", "tuned", "skipped", "fixed_params", "interactions"),
            {"trained": list, "models": dict, "best": str},
            ("candidates", "seed", "k", "attribute_separator", "recommend"),
            LEARN,
        ),
    ]


def _judging_stages() -> list[Stage]:
    """Evaluation, fairness, explanations, robustness, then the ones that record."""
    any_ = object
    return [
        Stage(
            "evaluate",
            evaluate,
            ("splits", "primary", "models", "best", "interactions"),
            {"assessment": dict, "result": any_},
            ("k", "seed", "gate_margin", "fairness.resamples", "item_attribute"),
            JUDGE,
        ),
        Stage(
            "fairness",
            fairness,
            ("result", "models", "best", "interactions"),
            {"fairness": dict, "exposure": dict},
            ("sensitive_features", "fairness", "k", "seed", "item_attribute"),
            JUDGE,
        ),
        Stage(
            "explain",
            explain,
            ("result", "models", "best", "interactions", "splits"),
            {"explanations": dict},
            ("seed", "k"),
            JUDGE,
        ),
        Stage(
            "robustness",
            robustness,
            ("splits", "models", "best", "trained", "interactions"),
            {"robustness": (dict, type(None))},
            ("seed", "k", "robustness", "attribute_separator", "recommend"),
            JUDGE,
        ),
        Stage(
            "register",
            register,
            (
                "tables",
                "pii_report",
                "interactions",
                "primary",
                "splits",
                "profile",
                "tuned",
                "skipped",
                "trained",
                "models",
                "best",
                "assessment",
                "result",
                "fairness",
                "exposure",
                "explanations",
                "robustness",
            ),
            {"run": dict},
            ("name", "card", "seed", "split", "k"),
            RECORD,
            still_valid=still_registered,
        ),
        Stage(
            "compare",
            compare,
            ("run", "splits", "primary", "result"),
            {"versus": (dict, type(None)), "planned_alias": (str, type(None))},
            ("k", "seed", "fairness.resamples"),
            RECORD,
        ),
        Stage(
            "report",
            report,
            ("run", "versus", "planned_alias"),
            {"reports": dict},
            (),
            RECORD,
        ),
        Stage(
            "alias",
            alias,
            ("run", "reports", "versus", "planned_alias"),
            {"alias": (str, type(None))},
            (),
            RECORD,
        ),
    ]


def _graph() -> Graph:
    sources = ("extra_rows", "fixed_params", "run_tags")
    return Graph([*_reading_stages(), *_judging_stages()], sources=sources)


RECOMMENDATION_LIFECYCLE = _graph()
"""The stage graph of ``keel run`` for ``task: recommendation``."""

READ_ONLY_UNTIL = "robustness"


def result_document(values: dict[str, Any]) -> dict[str, Any]:
    """What ``keel run --json`` prints for a recommender run."""
    run = values["run"]
    doc = run["report"]
    return {
        "run_id": run["run_id"],
        "experiment_id": run["experiment_id"],
        "model": {
            "name": run["name"],
            "version": run["version"],
            "alias": values["alias"],
            "candidate": doc["chosen"],
        },
        "task": "recommendation",
        "primary_metric": doc["primary_metric"],
        "metrics": doc["metrics"],
        "candidates": [
            {
                "name": c["name"],
                "kind": c["kind"],
                "validation": c["validation"],
                "test": c["test"],
                "test_warm": c["test_warm"],
                "test_cold": c["test_cold"],
            }
            for c in doc["candidates"]
        ],
        "data": {"digest": doc["data"]["digest"], "protocol": doc["protocol"]},
        "assessment": {
            "gate": doc["gate"],
            "gates": doc["gates"],
            "intervals": doc["intervals"],
            "fairness": {"breaches": [c for c in doc["fairness"]["checks"] if not c["passed"]]},
            "versus_champion": values["versus"],
        },
        "tuning": doc["tuning"],
        "skipped": doc.get("skipped", {}),
        "reports": values["reports"],
    }


def dumps(doc: dict[str, Any]) -> str:
    """JSON text of a document with NumPy numbers."""
    return json.dumps(doc, default=lambda v: v.item() if hasattr(v, "item") else str(v))


def run_result(state: Any, record: bool) -> dict[str, Any]:
    """The ``keel run --json`` fields of a finished run (``record=False``: read-only)."""
    values = state.values
    if not record:
        best = values["best"]
        tests = values["assessment"]["tests"]
        return dict(
            run_id="",
            experiment_id="",
            model={"name": "", "version": None, "alias": None, "candidate": best},
            task="recommendation",
            primary_metric=values["primary"],
            metrics=_logged_metrics(tests[best]),
            candidates=[
                {"name": c["name"], "validation": c["validation"], **tests[c["name"]]}
                for c in values["trained"]
            ],
            data={"digest": values["tables"]["data"].digest, "protocol": values["splits"].report},
            assessment={"gate": values["assessment"]["gate"]},
            tuning={},
            skipped=values["skipped"],
            reports={},
        )
    doc = result_document(values)
    alias = doc["model"]["alias"]
    name, version = doc["model"]["name"], doc["model"]["version"]
    doc["model"]["uri"] = f"models:/{name}@{alias}" if alias else f"models:/{name}/{version}"
    return doc


def _logged_metrics(chosen: dict[str, Any]) -> dict[str, float]:
    """The chosen model's test metrics as a run logs them (all, warm_, cold_, beyond)."""
    return {
        **chosen["test"],
        **{f"warm_{k}": v for k, v in chosen["test_warm"].items()},
        **{f"cold_{k}": v for k, v in chosen["test_cold"].items()},
        **chosen["beyond"],
    }
