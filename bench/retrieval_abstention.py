"""Extractive answers: how many distinct question terms a quoted sentence must share.

``keel run`` on examples/keel_docs (Keel's docs, 80 answerable and 12 unanswerable
labelled questions), then the registered model answers every labelled question with
``retrieval.min_terms`` = 1 (the old rule: the share of the question's IDF weight only),
2 (the default) and 3. Reported: evidence rate on the answerable questions (a cited
passage holds the labelled answer), abstention rate on the unanswerable ones, token F1,
and whether "What is the capital of France?" (one shared word, "capital", as in
capital-gain) is refused.

Writes ``bench/results/retrieval_abstention.json``.
Run: ``.venv/bin/python bench/retrieval_abstention.py``.
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "retrieval_abstention.json"
sys.path.insert(0, str(ROOT / "bench"))
from retrieval import _keel, _project  # noqa: E402

FRANCE = "What is the capital of France?"


def main() -> None:
    from keel.families.retrieval.package import load_retrieval
    from keel.families.retrieval.task import answer_metrics

    with tempfile.TemporaryDirectory() as folder:
        root = _project(Path(folder))
        done = _keel(root, "run", "--json")
        if done.returncode not in (0, 1):
            raise SystemExit(done.stderr[-2000:])
        uri = f"sqlite:///{root / '.keel' / 'mlflow.db'}"
        model = load_retrieval("keel-docs@champion", uri).model
        questions = pd.read_json(root / "queries.jsonl", lines=True)
        answerable = (questions["relevant"].str.len() > 0).to_numpy()
        rows = []
        for min_terms in (1, 2, 3):
            model.answer_settings.min_terms = min_terms
            answers = [model.ask(q) for q in questions["query"]]
            found = answer_metrics(answers, list(questions["answer"]), answerable)
            rows.append(
                {
                    "min_terms": min_terms,
                    "evidence_rate": round(float(found["evidence_rate"].mean()), 4),
                    "abstention_rate": round(float(found["abstention_rate"].mean()), 4),
                    "token_f1": round(float(found["token_f1"].mean()), 4),
                    "france_refused": bool(model.ask(FRANCE)["no_answer"]),
                }
            )
            print(rows[-1], flush=True)
    result = {
        "questions": {
            "answerable": int(answerable.sum()),
            "unanswerable": int((~answerable).sum()),
        },
        "min_support": model.answer_settings.min_support,
        "passages": model.answer_settings.passages,
        "by_min_terms": rows,
        "machine": {"python": platform.python_version(), "cpu": platform.processor()},
    }
    OUT.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
