"""Recommenders behind one contract: fit on interactions, score histories, top-K unseen.

Every recommender scores a batch of users from their *history* (a sparse row of the
items each has had): a known user's training history, a new user's history sent with
a request, or both. Scores are a dense ``(users, items)`` block, so callers rank one
chunk of users at a time and never hold the full user × item matrix. A fitted model is
plain arrays (:meth:`Recommender.arrays`) plus JSON parameters, saved in the model
package as ``.npz`` and loaded without pickle or training code (``implicit`` is needed
to fit ALS and BPR, not to score them).

Baselines: ``random``, ``popularity`` (users per item in training), and
``recent_popularity`` (users per item in the last :data:`RECENT_SHARE` of training
time). Candidates: ``item_knn`` (cosine item–item neighbours, shrunk), ``ease`` (Steck
2019, closed form), ``als`` (implicit-feedback ALS, Hu et al. 2008) and ``bpr``
(Rendle et al. 2009), the last two from the ``implicit`` package on one thread. A
history not seen in training is folded in: item-based models read it directly; factor
models solve the user's least-squares equation against the item factors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

RECENT_SHARE = 0.1
"""``recent_popularity`` counts the last tenth of the training period."""
KNN_BLOCK_CELLS = 20_000_000
"""item_knn computes similarities for blocks of items × at most this many cells (160 MB)."""


@dataclass(frozen=True)
class FitData:
    """What a recommender learns from: the user × item matrix (1 per interaction).

    ``recent`` counts each item's users in the last :data:`RECENT_SHARE` of time.
    """

    matrix: sp.csr_matrix
    recent: np.ndarray


class Recommender:
    """One recommender: ``fit``, then ``scores`` of user histories (higher is better)."""

    name: ClassVar[str]
    item_based: ClassVar[bool] = False

    def __init__(self, seed: int = 0, **params: Any) -> None:
        self.seed = int(seed)
        self.params = dict(params)
        self.state: dict[str, np.ndarray] = {}

    def fit(self, data: FitData) -> Recommender:
        """Learn from ``data``; returns ``self``."""
        self.state = self._fit(data)
        self.state["popularity"] = _users_per_item(data.matrix)
        return self

    def _fit(self, data: FitData) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def scores(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        """``(len(users), items)`` scores; ``users[i]`` is -1 for a user unknown in training."""
        raise NotImplementedError

    @property
    def popularity(self) -> np.ndarray:
        """Users per item in training: the answer for a user with no history at all."""
        return self.state["popularity"]

    @property
    def n_items(self) -> int:
        """Items in the catalogue the model ranks."""
        return len(self.popularity)

    def arrays(self) -> dict[str, np.ndarray]:
        """The fitted model as named arrays (what the package stores)."""
        return dict(self.state)

    def contributions(self, history: np.ndarray, item: int) -> np.ndarray | None:
        """Per history item, how much it raised ``item``'s score (item-based models)."""
        return None


def _users_per_item(matrix: sp.csr_matrix) -> np.ndarray:
    binary = matrix.copy()
    binary.data[:] = 1.0
    return np.asarray(binary.sum(axis=0)).ravel().astype(np.float64)


class RandomRecommender(Recommender):
    """Every item equally likely: the floor any model must clear."""

    name = "random"

    def _fit(self, data: FitData) -> dict[str, np.ndarray]:
        return {}

    def scores(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        """Random scores, seeded by the users asked about."""
        # seeded by the users asked about: the same users get the same lists
        key = [self.seed, len(users), *[int(u) % 2**31 for u in np.asarray(users)[:8]]]
        return np.random.default_rng(key).random((len(users), self.n_items))


class PopularityRecommender(Recommender):
    """The items most users had in training, for everyone."""

    name = "popularity"

    def _fit(self, data: FitData) -> dict[str, np.ndarray]:
        return {}

    def scores(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        """Every user gets the items' popularity."""
        return np.broadcast_to(self.popularity, (len(users), self.n_items)).copy()


class RecentPopularityRecommender(Recommender):
    """The items most users had in the last tenth of training time (ties: all time)."""

    name = "recent_popularity"

    def _fit(self, data: FitData) -> dict[str, np.ndarray]:
        return {"recent": np.asarray(data.recent, dtype=np.float64)}

    def scores(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        """Recent popularity, all-time popularity breaking ties."""
        all_time = self.popularity / max(1.0, float(self.popularity.max()) + 1.0)
        line = self.state["recent"] + all_time
        return np.broadcast_to(line, (len(users), self.n_items)).copy()


class _ItemBased(Recommender):
    """Scores are the history times an item × item weight matrix."""

    item_based = True

    def _weights(self) -> Any:
        raise NotImplementedError

    def scores(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        out = history @ self._weights()
        return np.asarray(out.toarray() if sp.issparse(out) else out, dtype=np.float64)

    def contributions(self, history: np.ndarray, item: int) -> np.ndarray | None:
        weights = self._weights()
        column = weights[:, [item]]
        column = column.toarray().ravel() if sp.issparse(column) else np.asarray(column).ravel()
        return column[np.asarray(history, dtype=np.int64)]


class ItemKnnRecommender(_ItemBased):
    """Cosine similarity of item columns, shrunk, keeping each item's nearest neighbours."""

    name = "item_knn"

    def _fit(self, data: FitData) -> dict[str, np.ndarray]:
        neighbours = int(self.params.get("neighbours", 100))
        shrink = float(self.params.get("shrink", 10.0))
        x = data.matrix.tocsc().astype(np.float64)
        n = x.shape[1]
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
        xt = x.T.tocsr()
        # one block of target items at a time: memory is items x block, never items^2
        block = max(1, min(n, KNN_BLOCK_CELLS // max(1, n)))
        values, rows, columns = [], [], []
        for start in range(0, n, block):
            stop = min(start + block, n)
            sim = (xt @ x[:, start:stop]).toarray()
            sim /= np.outer(norms, norms[start:stop]) + shrink + 1e-12
            sim[np.arange(start, stop), np.arange(stop - start)] = 0.0
            if neighbours < n:  # keep each target item's strongest neighbours
                cut = np.argpartition(-sim, neighbours - 1, axis=0)[neighbours:, :]
                np.put_along_axis(sim, cut, 0.0, axis=0)
            r, c = np.nonzero(sim)
            values.append(sim[r, c])
            rows.append(r)
            columns.append(c + start)
        weights = sp.csc_matrix(
            (np.concatenate(values), (np.concatenate(rows), np.concatenate(columns))),
            shape=(n, n),
        )
        return {"data": weights.data, "indices": weights.indices, "indptr": weights.indptr}

    def _weights(self) -> Any:
        cached = getattr(self, "_matrix", None)
        if cached is None:
            s = self.state
            n = len(s["indptr"]) - 1
            cached = sp.csc_matrix((s["data"], s["indices"], s["indptr"]), shape=(n, n)).tocsr()
            self._matrix = cached
        return cached


class EaseRecommender(_ItemBased):
    """EASE: a zero-diagonal item × item regression solved in closed form (Steck, 2019)."""

    name = "ease"

    def _fit(self, data: FitData) -> dict[str, np.ndarray]:
        # memory: two items x items float64 matrices at most (the Gram matrix is freed
        # once inverted; the weights are made in place). Whether a catalogue fits the
        # machine is decided before fitting, by keel.families.recommendation.estimate.
        n = data.matrix.shape[1]
        x = data.matrix.astype(np.float64)
        gram = (x.T @ x).toarray()
        gram[np.diag_indices(n)] += float(self.params.get("l2", 200.0))
        weights = np.linalg.inv(gram)
        del gram
        weights /= -np.diag(weights).copy()
        np.fill_diagonal(weights, 0.0)
        return {"weights": weights.astype(np.float32)}

    def _weights(self) -> Any:
        return self.state["weights"]


class _Factors(Recommender):
    """User and item factors; an unknown history is folded in by least squares."""

    def scores(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        return self.user_vectors(users, history) @ self.item_vectors().T

    def user_vectors(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        """Each user's factors: trained, or folded in from a history training did not see."""
        users = np.asarray(users, dtype=np.int64)
        items = self.item_vectors()
        vectors = np.empty((len(users), items.shape[1]), dtype=np.float64)
        known = (users >= 0) & (history.getnnz(axis=1) == self._trained_count(users))
        if known.any():
            vectors[known] = self.state["user_factors"][users[known]]
        for row in np.flatnonzero(~known):
            vectors[row] = self.fold_in(history[row].indices, history[row].data)
        return vectors

    def item_vectors(self) -> np.ndarray:
        """The item factors as float64 (made once: one conversion, not one per request)."""
        # float64 item factors, made once: a float32 matrix in a float64 product is
        # converted on every call (13 MB per request at 26,744 items x 64 factors)
        cached = getattr(self, "_cached_items", None)
        if cached is None or cached[0] is not self.state["item_factors"]:
            factors = self.state["item_factors"]
            cached = (factors, np.asarray(factors, dtype=np.float64))
            self._cached_items = cached
        return cached[1]

    def _trained_count(self, users: np.ndarray) -> np.ndarray:
        counts = self.state["history_sizes"]
        return np.where(users >= 0, counts[np.maximum(users, 0)], -1)

    def fold_in(self, items: np.ndarray, values: np.ndarray) -> np.ndarray:
        """The user vector that best explains this history (ALS's user step)."""
        factors = self.state["item_factors"].astype(np.float64)
        k = factors.shape[1]
        if not len(items):
            return np.zeros(k)
        reg = float(self.params.get("regularization", 0.01))
        alpha = float(self.params.get("alpha", 1.0))
        confidence = alpha * np.asarray(values, dtype=np.float64)
        y = factors[items]
        a = factors.T @ factors + reg * np.eye(k) + (y.T * (confidence - 1.0)) @ y
        b = (y * confidence[:, None]).sum(0)
        return np.linalg.solve(a, b)

    def contributions(self, history: np.ndarray, item: int) -> np.ndarray | None:
        """Each history item's share of ``item``'s folded-in score (implicit's explain).

        The fold-in solves ``W u = sum_j c_j y_j``, so the score ``y_item . u`` splits
        into ``c_j * y_item . W^-1 y_j`` per history item ``j`` (Hu et al. 2008, sec. 5).
        """
        history = np.asarray(history, dtype=np.int64)
        if not len(history):
            return np.array([])
        factors = self.state["item_factors"].astype(np.float64)
        k = factors.shape[1]
        reg = float(self.params.get("regularization", 0.01))
        confidence = np.full(len(history), float(self.params.get("alpha", 1.0)))
        y = factors[history]
        w = factors.T @ factors + reg * np.eye(k) + (y.T * (confidence - 1.0)) @ y
        return confidence * (y @ np.linalg.solve(w, factors[item]))

    def _implicit_fit(self, make: Callable[[], Any], data: FitData) -> dict[str, np.ndarray]:
        import warnings

        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, "blas"), warnings.catch_warnings():
            # implicit warns about OpenBLAS threads; they are limited to one just here
            warnings.filterwarnings("ignore", message="OpenBLAS is configured")
            model = make()
            model.fit(data.matrix.astype(np.float32), show_progress=False)
        return {
            "user_factors": np.asarray(model.user_factors, dtype=np.float32),
            "item_factors": np.asarray(model.item_factors, dtype=np.float32),
            "history_sizes": data.matrix.getnnz(axis=1).astype(np.int64),
        }


class AlsRecommender(_Factors):
    """Implicit-feedback ALS (Hu, Koren, Volinsky 2008) from ``implicit``, one thread."""

    name = "als"

    def _fit(self, data: FitData) -> dict[str, np.ndarray]:
        from implicit.cpu.als import AlternatingLeastSquares

        return self._implicit_fit(
            lambda: AlternatingLeastSquares(
                factors=int(self.params.get("factors", 64)),
                regularization=float(self.params.get("regularization", 0.01)),
                alpha=float(self.params.get("alpha", 1.0)),
                iterations=int(self.params.get("iterations", 15)),
                random_state=self.seed,
                num_threads=1,
                calculate_training_loss=False,
            ),
            data,
        )


class BprRecommender(_Factors):
    """Bayesian personalised ranking (Rendle et al. 2009) from ``implicit``, one thread."""

    name = "bpr"

    def _fit(self, data: FitData) -> dict[str, np.ndarray]:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        return self._implicit_fit(
            lambda: BayesianPersonalizedRanking(
                factors=int(self.params.get("factors", 64)),
                learning_rate=float(self.params.get("learning_rate", 0.05)),
                regularization=float(self.params.get("regularization", 0.01)),
                iterations=int(self.params.get("iterations", 100)),
                random_state=self.seed,
                num_threads=1,
            ),
            data,
        )


RECOMMENDER_TYPES: dict[str, type[Recommender]] = {
    cls.name: cls
    for cls in (
        RandomRecommender,
        PopularityRecommender,
        RecentPopularityRecommender,
        ItemKnnRecommender,
        EaseRecommender,
        AlsRecommender,
        BprRecommender,
    )
}


def _knn_space(trial: Any) -> dict[str, Any]:
    return {
        "neighbours": trial.suggest_int("neighbours", 10, 400, log=True),
        "shrink": trial.suggest_float("shrink", 0.0, 100.0),
    }


def _ease_space(trial: Any) -> dict[str, Any]:
    return {"l2": trial.suggest_float("l2", 1.0, 5000.0, log=True)}


def _als_space(trial: Any) -> dict[str, Any]:
    return {
        "factors": trial.suggest_int("factors", 16, 192, log=True),
        "regularization": trial.suggest_float("regularization", 1e-3, 10.0, log=True),
        "alpha": trial.suggest_float("alpha", 0.5, 50.0, log=True),
        "iterations": trial.suggest_int("iterations", 5, 30),
    }


def _bpr_space(trial: Any) -> dict[str, Any]:
    return {
        "factors": trial.suggest_int("factors", 16, 192, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 1e-3, 0.2, log=True),
        "regularization": trial.suggest_float("regularization", 1e-4, 0.1, log=True),
        "iterations": trial.suggest_int("iterations", 20, 200, log=True),
    }


RECOMMENDER_SPACES: dict[str, Callable[[Any], dict[str, Any]]] = {
    "item_knn": _knn_space,
    "ease": _ease_space,
    "als": _als_space,
    "bpr": _bpr_space,
}
DEFAULT_RECOMMENDER_PARAMS: dict[str, dict[str, Any]] = {
    "item_knn": {"neighbours": 100, "shrink": 10.0},
    "ease": {"l2": 200.0},
    "als": {"factors": 64, "regularization": 0.01, "alpha": 1.0, "iterations": 15},
    "bpr": {"factors": 64, "learning_rate": 0.05, "regularization": 0.01, "iterations": 100},
}


def make_recommender(name: str, seed: int = 0, **params: Any) -> Recommender:
    """A fresh recommender of kind ``name``."""
    try:
        return RECOMMENDER_TYPES[name](seed=seed, **params)
    except KeyError:
        raise ValueError(f"unknown recommender {name!r}") from None


def restore(name: str, params: dict[str, Any], arrays: dict[str, np.ndarray], seed: int = 0):
    """A fitted recommender from its parameters and arrays (no fitting, no pickle)."""
    model = make_recommender(name, seed, **params)
    model.state = {key: np.asarray(value) for key, value in arrays.items()}
    return model
