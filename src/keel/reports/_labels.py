"""Names of ranking metrics as people read them (every family that ranks uses them)."""

from __future__ import annotations

NAMES = {
    "ndcg": "NDCG",
    "map": "MAP",
    "mrr": "MRR",
    "precision": "Precision",
    "recall": "Recall",
    "hit_rate": "Hit rate",
    "coverage": "Catalogue coverage",
    "novelty": "Novelty (bits)",
    "popularity": "Mean popularity",
    "diversity": "Intra-list diversity",
}


def metric_label(metric: str) -> str:
    """``ndcg_at_10`` → ``NDCG@10 (ndcg_at_10)``: what people read, and the JSON name."""
    base, _, k = metric.partition("_at_")
    words = NAMES.get(base, base.replace("_", " "))
    return f"{words}@{k} ({metric})" if k else f"{words} ({metric})"
