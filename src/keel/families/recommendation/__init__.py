"""The recommendation family: users in, ranked items out (``task: recommendation``).

Interactions split by time with cold-start users, item-kNN / EASE / ALS / BPR against
random and popularity baselines, full-ranking metrics over users, exposure fairness,
``POST /recommend``, popularity drift. A cheap descriptor: every method imports the
family's modules (and implicit, SciPy) when called.
"""

from __future__ import annotations

from typing import Any, ClassVar

from keel.families import Capabilities, Family


class RecommendationFamily(Family):
    """Recommenders over user–item interactions."""

    name = "recommendation"
    tasks = ("recommendation",)
    task_module = "keel.families.recommendation.task"
    commands_module = "keel.families.recommendation.cli"
    subject_documents = ("monitoring_reference.json",)  # its user-group map names users
    stage_names = (
        "ingest", "pii", "validate", "split", "profile", "tune", "train", "evaluate",
        "fairness", "explain", "robustness", "register", "compare", "report", "alias",
    )  # fmt: skip
    config_section: ClassVar[str | None] = "recommend"  # business rules (RecommendSection)
    requires: ClassVar[tuple[str, ...]] = ("implicit",)
    extra: ClassVar[str | None] = "recommend"
    capabilities: ClassVar[Capabilities] = Capabilities(
        ranks=True, serves_routes=("/recommend",), batch_predict=True, ab_tests=True
    )

    @property
    def baselines(self) -> tuple[str, ...]:  # type: ignore[override]
        from keel.config import RECOMMENDER_BASELINES

        return RECOMMENDER_BASELINES

    @property
    def config_keys(self) -> tuple[str, ...]:  # type: ignore[override]
        from keel.config import RECOMMENDATION_KEYS

        return RECOMMENDATION_KEYS

    def config_defaults(self, data: dict[str, Any]) -> dict[str, Any]:
        from keel.families.recommendation.config import defaults

        return defaults(data)

    def check_config(self, config: Any) -> None:
        from keel.families.recommendation.config import check_config

        check_config(config)

    def section_model(self) -> Any:
        from keel.families.recommendation.config import RecommendSection

        return RecommendSection

    def lifecycle(self) -> tuple[Any, str]:
        from keel.families.recommendation.pipeline import READ_ONLY_UNTIL, RECOMMENDATION_LIFECYCLE

        return RECOMMENDATION_LIFECYCLE, READ_ONLY_UNTIL

    def result(self, state: Any, record: bool) -> dict[str, Any]:
        from keel.families.recommendation.pipeline import run_result

        return run_result(state, record)

    def render_run(self, payload: dict[str, Any]) -> None:
        from keel.families.recommendation.cli import _render_ranking_run

        _render_ranking_run(payload)

    def reproduce_params(self, document: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return document["chosen"], document.get("tuning", {})

    def load(self, uri: str, tracking_uri: str) -> Any:
        from keel.families.recommendation.package import load_recommender

        return load_recommender(uri, tracking_uri)

    def serving_parts(self) -> dict[str, Any]:
        from keel.families.recommendation.serve import APP_PARTS

        return APP_PARTS

    def subject_column(self, config: Any) -> str | None:
        return config.user_column

    def subject_in_package(self, documents: dict[str, Any], subject: str) -> list[str]:
        reference = documents.get("monitoring_reference.json") or {}
        groups = reference.get("user_groups") or {}
        held_in = [f for f, users in groups.items() if subject in users]
        return [f"package user-group map ({', '.join(held_in)})"] if held_in else []

    def log_subject(self, package: Any) -> str | None:
        return str(package.metadata.get("user_column") or "user_id")

    def loadtest_bodies(self, model: dict[str, Any], tracking_uri: str, rows: int) -> Any:
        from keel.families.recommendation.serve import loadtest_bodies

        return loadtest_bodies(model, tracking_uri, rows)

    def batch_predict(
        self, uri: str, tracking_uri: str, source: Any, out: Any, options: dict[str, Any]
    ) -> tuple[dict[str, Any], str, str]:
        from pathlib import Path

        from keel.errors import KeelInputError
        from keel.families.recommendation.batch import recommend_file
        from keel.families.recommendation.rules import read_filters

        if options.get("ray_address"):
            raise KeelInputError("--ray-address scores rows of features; not recommenders")
        filters = read_filters(options.get("filters"))
        loaded = self.load(uri, tracking_uri)
        summary = recommend_file(
            loaded,
            Path(source),
            out,
            options["k"],
            options["force"],
            progress=options["progress"],
            filters=filters,
        )
        return summary, loaded.name, loaded.version

    def judge_windows(
        self,
        frame: Any,
        reference: dict[str, Any],
        meta: dict[str, Any],
        window: str | int,
        min_rows: int,
        now: float | None,
    ) -> Any:
        from keel.families.recommendation.monitor import monitor_recommendations

        return monitor_recommendations(
            frame, reference, meta, window=window, min_rows=min_rows, now=now
        )

    def monitor_log(
        self,
        chunks: Any,
        empty: Any,
        reference: dict[str, Any],
        meta: dict[str, Any],
        specs: dict[str, Any],
        min_rows: int,
        now: float,
    ) -> dict[str, Any]:
        from keel.families.recommendation.monitor import monitor_recommendation_chunks

        return {  # the log is read once per window kind, one page at a time
            key: monitor_recommendation_chunks(
                chunks(), reference, meta, window=spec, min_rows=min_rows, now=now
            )
            for key, spec in specs.items()
        }

    def render_dashboard(self, found: dict[str, Any], alerts: list[dict[str, Any]]) -> str:
        from keel.families.recommendation.monitor import render_recommendation_dashboard

        return render_recommendation_dashboard(found, alerts)

    def monitor_table(self) -> tuple[tuple[str, ...], Any]:
        from keel.families.recommendation.monitor import MONITOR_HEADS, monitor_row

        return MONITOR_HEADS, monitor_row

    def reference_description(self) -> str:
        return "popularity bands, coverage and user groups"

    def package_evidence(self) -> str:
        return (
            "the same lists twice, no seen item, the same lists after save and load, cold"
            " start flagged"
        )

    def write_card(
        self, document: dict[str, Any], info: dict[str, Any], extra: dict[str, Any], folder: Any
    ) -> dict[str, str]:
        from keel.families.recommendation.report import card_sections, write_recommender_governance
        from keel.pipeline._cards import write_sections_card

        return write_sections_card(
            document, info, extra, folder, card_sections, write_recommender_governance
        )

    def experiment_kind(self, task: Any) -> str:
        return "lists"


FAMILY = RecommendationFamily()
