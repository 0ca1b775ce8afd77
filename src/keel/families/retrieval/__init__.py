"""The retrieval family: questions in, answers with citations out (``task: retrieval``).

A corpus checked and PII-redacted, chunked and indexed (BM25, WordLlama + FAISS,
hybrid), retrievers tuned on labelled questions, extractive (or generated) answers with
citations, guardrails attacked, ``POST /ask``, question drift. A cheap descriptor:
every method imports the family's modules (and bm25s, faiss, wordllama) when called.
"""

from __future__ import annotations

from typing import Any, ClassVar

from keel.families import Capabilities, Family


class RetrievalFamily(Family):
    """Retrieval-augmented question answering over a corpus of documents."""

    name = "retrieval"
    tasks = ("retrieval",)
    task_module = "keel.families.retrieval.task"
    commands_module = "keel.families.retrieval.cli"
    stage_names = (
        "ingest", "pii", "validate", "tune", "train", "evaluate", "guardrails", "register",
        "compare", "report", "alias",
    )  # fmt: skip
    requires: ClassVar[tuple[str, ...]] = ("bm25s", "Stemmer", "wordllama", "faiss", "pypdf")
    extra: ClassVar[str | None] = "rag"
    capabilities: ClassVar[Capabilities] = Capabilities(
        ranks=True, serves_routes=("/ask",), reads_folders=True
    )

    @property
    def baselines(self) -> tuple[str, ...]:  # type: ignore[override]
        from keel.config import RETRIEVER_BASELINES

        return RETRIEVER_BASELINES

    @property
    def config_keys(self) -> tuple[str, ...]:  # type: ignore[override]
        from keel.config import RETRIEVAL_KEYS

        return RETRIEVAL_KEYS

    def config_defaults(self, data: dict[str, Any]) -> dict[str, Any]:
        from keel.families.retrieval.config import defaults

        return defaults(data)

    def check_config(self, config: Any) -> None:
        from keel.families.retrieval.config import check_config

        check_config(config)

    def lifecycle(self) -> tuple[Any, str]:
        from keel.families.retrieval.pipeline import READ_ONLY_UNTIL, RETRIEVAL_LIFECYCLE

        return RETRIEVAL_LIFECYCLE, READ_ONLY_UNTIL

    def result(self, state: Any, record: bool) -> dict[str, Any]:
        from keel.families.retrieval.pipeline import run_result

        return run_result(state, record)

    def render_run(self, payload: dict[str, Any]) -> None:
        from keel.families.retrieval.cli import _render_retrieval_run

        _render_retrieval_run(payload)

    def reproduce_params(self, document: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        from keel.errors import KeelInputError

        raise KeelInputError(
            "keel reproduce re-runs tabular and recommender runs; a retrieval run's index"
            " and answers are checked by its package checks (package_checks.json) instead"
        )

    def load(self, uri: str, tracking_uri: str) -> Any:
        from keel.families.retrieval.package import load_retrieval

        return load_retrieval(uri, tracking_uri)

    def serving_parts(self) -> dict[str, Any]:
        from keel.families.retrieval.serve import APP_PARTS

        return APP_PARTS

    def loadtest_bodies(self, model: dict[str, Any], tracking_uri: str, rows: int) -> Any:
        from keel.families.retrieval.serve import loadtest_bodies

        return loadtest_bodies(model, tracking_uri, rows)

    def judge_windows(
        self,
        frame: Any,
        reference: dict[str, Any],
        meta: dict[str, Any],
        window: str | int,
        min_rows: int,
        now: float | None,
    ) -> Any:
        from keel.families.retrieval.monitor import monitor_questions

        return monitor_questions(frame, reference, meta, window=window, min_rows=min_rows, now=now)

    def render_dashboard(self, found: dict[str, Any], alerts: list[dict[str, Any]]) -> str:
        from keel.families.retrieval.monitor import render_retrieval_dashboard

        return render_retrieval_dashboard(found)

    def monitor_table(self) -> tuple[tuple[str, ...], Any]:
        from keel.families.retrieval.monitor import MONITOR_HEADS, monitor_row

        return MONITOR_HEADS, monitor_row

    def reference_description(self) -> str:
        return "question centroid, out-of-corpus similarity and no-answer rate"

    def package_evidence(self) -> str:
        return (
            "the same answer twice, the same rankings and answers after save and load"
            " (digests checked), an injection blocked, no answer without support"
        )

    def write_card(
        self, document: dict[str, Any], info: dict[str, Any], extra: dict[str, Any], folder: Any
    ) -> dict[str, str]:
        from keel.families.retrieval.report import card_sections, write_retrieval_governance
        from keel.pipeline._cards import write_sections_card

        return write_sections_card(
            document, info, extra, folder, card_sections, write_retrieval_governance
        )

    def experiment_kind(self, task: Any) -> str:
        from keel.errors import KeelInputError

        raise KeelInputError(
            "A/B tests compare ranked lists, classes or numbers; a retrieval model's answers"
            " are judged by `keel monitor` (helpful rate, no-answer rate) instead"
        )


FAMILY = RetrievalFamily()
