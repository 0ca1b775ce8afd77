"""Fitting and tuning recommenders: the interaction matrix, Optuna on validation NDCG.

Tuning uses the same machinery as tabular candidates (Optuna's seeded TPE sampler, the
default parameters tried first, a wall-clock budget or an exact number of trials, the
same :class:`~keel._trials.Trial` records): each trial fits on the training
interactions and is scored on the validation period over the full catalogue.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from keel._trials import Trial, TuningResult
from keel.families.recommendation.data import ITEM, TIME, USER
from keel.families.recommendation.models import (
    DEFAULT_RECOMMENDER_PARAMS,
    RECENT_SHARE,
    RECOMMENDER_SPACES,
    FitData,
    make_recommender,
)
from keel.families.recommendation.rules import Catalogue
from keel.families.recommendation.task import RecommenderModel, evaluate_ranking


def interaction_matrix(frame: pd.DataFrame, users: np.ndarray, items: np.ndarray) -> sp.csr_matrix:
    """User × item 0/1 matrix of ``frame`` (rows ``users``, columns ``items``)."""
    rows = pd.Index(users).get_indexer(frame[USER])
    cols = pd.Index(items).get_indexer(frame[ITEM])
    keep = (rows >= 0) & (cols >= 0)
    matrix = sp.csr_matrix(
        (np.ones(int(keep.sum()), dtype=np.float32), (rows[keep], cols[keep])),
        shape=(len(users), len(items)),
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


_PREPARED: list[tuple[pd.DataFrame, tuple]] = []
PREPARED_FRAMES = 2
"""The matrices of this many frames are kept (train and train + validation)."""


def _prepared(frame: pd.DataFrame) -> tuple:
    """Users, items, the 0/1 matrix and recent counts of ``frame`` (made once per frame).

    Every trial and every model of a run learns from the same two frames; building the
    matrix from 18M string ids takes seconds, so it is kept for the frames last used
    (held by reference: the same object, unchanged, is the same matrix).
    """
    for known, found in _PREPARED:
        if known is frame:
            return found
    users = np.sort(frame[USER].unique()).astype(str)
    items = np.sort(frame[ITEM].unique()).astype(str)
    matrix = interaction_matrix(frame, users, items)
    times = frame[TIME].to_numpy()
    start = np.quantile(times, 1.0 - RECENT_SHARE) if len(times) else 0
    recent_rows = frame[times >= start].drop_duplicates([USER, ITEM])
    recent = np.bincount(
        pd.Index(items).get_indexer(recent_rows[ITEM]), minlength=len(items)
    ).astype(np.float64)
    found = (users, items, matrix, recent)
    _PREPARED.insert(0, (frame, found))
    del _PREPARED[PREPARED_FRAMES:]
    return found


def fit_model(
    name: str,
    params: dict[str, Any],
    frame: pd.DataFrame,
    seed: int,
    catalogue: Catalogue | None = None,
) -> RecommenderModel:
    """Fit recommender ``name`` on the interactions of ``frame`` (its users and items).

    ``catalogue``: the items' attributes and keel.yaml's business rules, which the model
    then applies on every path (its validation and test lists included).
    """
    users, items, matrix, recent = _prepared(frame)
    recommender = make_recommender(name, seed, **params).fit(FitData(matrix, recent))
    model = RecommenderModel(recommender, users, items, matrix, {"params": params})
    return catalogue.attach(model) if catalogue is not None else model


def validation_metrics(
    model: RecommenderModel, held_out: pd.DataFrame, ks: Sequence[int]
) -> dict[str, float]:
    """Mean of every per-user metric on ``held_out`` (warm and cold users together)."""
    return evaluate_ranking(model, held_out, ks).means()


SKIP_STREAK = 5
"""Tuning stops after this many proposals in a row would end after the deadline."""


def tune_recommender(
    name: str,
    train: pd.DataFrame,
    validation: pd.DataFrame,
    ks: Sequence[int],
    metric: str,
    seed: int,
    budget_seconds: float,
    trials: int | None = None,
    on_trial: Callable[[Trial, float | None], None] | None = None,
    catalogue: Catalogue | None = None,
    deadline: Callable[[], float] | None = None,
    cost: Callable[[dict[str, Any]], float] | None = None,
) -> TuningResult:
    """Tune ``name`` on ``validation`` ``metric`` (higher is better) with Optuna's TPE.

    With ``trials``, exactly that many trials run. Otherwise trials run while the clock
    (``time.perf_counter``) is before ``deadline()`` (re-read before every trial;
    default: ``budget_seconds`` from now), and a trial whose cost — ``cost(params)``,
    the estimate of :mod:`~keel.families.recommendation.estimate`, corrected by the
    ratio of measured to estimated seconds of the trials so far — would end after the
    deadline is not started (recorded as ``skipped``, the estimate its seconds).
    """
    import optuna

    from keel.families.recommendation.estimate import calibrated

    space = RECOMMENDER_SPACES.get(name)
    if trials is not None:
        budget_seconds = float("inf")
    if space is None or budget_seconds <= 0 or trials == 0:
        return TuningResult(name, metric, {}, None)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    records: list[Trial] = []
    best: list[float | None] = [None]
    measured: list[tuple[float, float]] = []  # (seconds, estimated seconds) of each trial
    streak = [0]
    started = time.perf_counter()
    ends = deadline or (lambda: started + budget_seconds)

    def objective(trial: Any) -> float:
        params = space(trial)
        guess = cost(params) if cost is not None else 0.0
        if trials is None and cost is not None and records:  # the defaults always run
            expected = calibrated(guess, measured)
            if time.perf_counter() + expected > ends():
                streak[0] += 1
                records.append(Trial(trial.number, params, "skipped", None, [], expected))
                if streak[0] >= SKIP_STREAK:
                    trial.study.stop()
                raise optuna.TrialPruned(f"expected {expected:.0f} s; the deadline is nearer")
        streak[0] = 0
        began = time.perf_counter()
        model = fit_model(name, params, train, seed, catalogue)
        metrics = validation_metrics(model, validation, ks)
        score = float(metrics[metric])
        seconds = time.perf_counter() - began
        measured.append((seconds, guess))
        records.append(Trial(trial.number, params, "complete", score, [score], seconds, [metrics]))
        if best[0] is None or score > best[0]:
            best[0] = score
        if on_trial is not None:
            on_trial(records[-1], best[0])
        return score

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.enqueue_trial(DEFAULT_RECOMMENDER_PARAMS[name])

    def stop_when_spent(study: Any, _trial: Any) -> None:
        if trials is None and time.perf_counter() >= ends():
            study.stop()

    study.optimize(objective, n_trials=trials, callbacks=[stop_when_spent], catch=())
    return TuningResult(
        name,
        metric,
        dict(study.best_params),
        float(study.best_value),
        records,
        time.perf_counter() - started,
    )


def tuned_validation(result: TuningResult | None, params: dict[str, Any]) -> dict | None:
    """The validation metrics tuning measured for ``params`` (``None``: not measured)."""
    if result is None:
        return None
    for trial in result.trials:
        if trial.state == "complete" and trial.params == params and trial.fold_metrics:
            return dict(trial.fold_metrics[0])
    return None


def _exposure(model: RecommenderModel, users: np.ndarray, target: str, k: int) -> float:
    """Share of ``users`` (ids) whose top-``k`` holds item ``target``."""
    column = int(model.item_columns([target])[0])
    if column < 0:
        return 0.0
    rows = model.user_index(users)
    hits = 0
    for at in range(0, len(rows), 500):
        lists, _, _ = model.rank(rows[at : at + 500], k)
        hits += int((lists == column).any(axis=1).sum())
    return hits / max(len(rows), 1)


FILLER = 50  # at most this many popular items per fake profile (a real user's median)


def shilling_attack(
    name: str,
    params: dict[str, Any],
    frame: pd.DataFrame,
    model: RecommenderModel,
    share: float,
    k: int,
    seed: int,
    max_users: int = 1000,
    catalogue: Catalogue | None = None,
) -> dict[str, Any]:
    """The effect of fake users pushing one item on that item's exposure.

    ``share`` × users fake profiles (a bandwagon attack: the target item plus a real
    user's typical number of the most popular items) are added to the training
    interactions; the same recommender with the same parameters is fitted again, and
    the target's exposure — the share of real users whose top-``k`` holds it — is
    compared before and after. The target is an item of median popularity (a pushed
    item is rarely a hit already). Seeded.
    """
    rng = np.random.default_rng(seed)
    counts = frame.drop_duplicates([USER, ITEM])[ITEM].astype(str).value_counts()
    target = str(counts.index[len(counts) // 2])
    users = frame[USER].astype(str).unique()
    fakes = max(1, int(np.ceil(share * len(users))))
    per_user = frame.drop_duplicates([USER, ITEM]).groupby(USER).size()
    filler = int(min(max(per_user.median(), 1), FILLER))
    popular = [i for i in counts.index[: max(filler * 2, 20)] if i != target]
    last = frame[TIME].max()
    rows = []
    for f in range(fakes):
        picked = rng.choice(popular, size=min(filler, len(popular)), replace=False)
        for item in [target, *picked]:
            rows.append({USER: f"keel-shill-{f}", ITEM: item, TIME: last})
    attacked = pd.concat(
        [frame[[USER, ITEM, TIME]].astype({USER: str, ITEM: str}), pd.DataFrame(rows)],
        ignore_index=True,
    )
    after_model = fit_model(name, params, attacked, seed, catalogue)
    audience = rng.choice(users, size=min(max_users, len(users)), replace=False)
    before = _exposure(model, audience, target, k)
    after = _exposure(after_model, audience, target, k)
    return {
        "target_item": target,
        "target_popularity_rank": int(len(counts) // 2 + 1),
        "items": len(counts),
        "fake_users": fakes,
        "fake_share": share,
        "profile_size": filler + 1,
        "users_measured": len(audience),
        "k": k,
        "exposure_before": before,
        "exposure_after": after,
        "gain": after - before,
    }
