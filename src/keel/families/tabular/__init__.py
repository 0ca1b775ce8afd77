"""The tabular family: one row of features in, one prediction out.

Tasks ``binary``, ``multiclass`` and ``regression`` (``task.py``); the stages are
``keel.pipeline``'s lifecycle graph. A cheap descriptor: every method imports what it
needs when called.
"""

from __future__ import annotations

from typing import Any, ClassVar

from keel.families import Capabilities, Family


class TabularFamily(Family):
    """Rows of features with a labelled target: classification and regression."""

    name = "tabular"
    tasks = ("binary", "multiclass", "regression")
    default = True  # keel.yaml without `task:` (inferred from the target)
    task_module = "keel.families.tabular.task"
    stage_names = (
        "ingest", "pii", "validate", "split", "leakage", "profile", "tune", "train",
        "evaluate", "fairness", "explain", "robustness", "register", "compare", "report",
        "card", "alias",
    )  # fmt: skip
    capabilities: ClassVar[Capabilities] = Capabilities(
        has_target=True,
        serves_routes=("/predict", "/explain", "/v2/models/{name}/infer"),
        supports_shadow=True,
        batch_predict=True,
        builds_image=True,
        explains=True,
        ab_tests=True,
    )

    @property
    def baselines(self) -> tuple[str, ...]:  # type: ignore[override]
        from keel.config import BASELINE_NAMES

        return BASELINE_NAMES

    def check_config(self, config: Any) -> None:
        from keel.families.tabular.config import check_config

        check_config(config)

    def lifecycle(self) -> tuple[Any, str]:
        from keel.families.tabular.stages import LIFECYCLE, READ_ONLY_UNTIL

        return LIFECYCLE, READ_ONLY_UNTIL

    def result(self, state: Any, record: bool) -> dict[str, Any]:
        from keel.families.tabular.pipeline import run_result

        return run_result(state, record)

    def render_run(self, payload: dict[str, Any]) -> None:
        from keel.families.tabular.cli import _render_run

        _render_run(payload)

    def reproduce_params(self, document: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        from keel.reports import RunReport

        report = RunReport.from_dict(document, origin="reports/report.json")
        return report.model.candidate, report.tuning

    def load(self, uri: str, tracking_uri: str) -> Any:
        from keel.registry import load_package

        return load_package(uri, tracking_uri)

    def app(self, package: Any, **options: Any) -> Any:
        from keel.families.tabular.serve import tabular_app

        return tabular_app(package, **options)

    def create_app(self, package: Any, spec: Any, log: Any, explain_row: Any = None) -> Any:
        from keel.families.tabular.serve import create_tabular_app

        return create_tabular_app(package, spec, log, explain_row)

    def batch_predict(
        self, uri: str, tracking_uri: str, source: Any, out: Any, options: dict[str, Any]
    ) -> tuple[dict[str, Any], str, str]:
        from keel.errors import KeelInputError
        from keel.families.tabular.batch import Source, predict_file
        from keel.registry import load_package

        if options.get("filters"):
            raise KeelInputError("--filters narrows a recommender's lists; remove it for rows")
        package = load_package(uri, tracking_uri)
        summary = predict_file(
            package,
            Source(source, options["query"], options["root"]),
            out,
            options["rejects"],
            force=options["force"],
            chunk=options["chunk"],
            unseen=options["unseen"],
            progress=options["progress"],
            ray_address=options["ray_address"],
        )
        return summary, package.name, package.version

    def loadtest_bodies(self, model: dict[str, Any], tracking_uri: str, rows: int) -> Any:
        from keel.families.tabular.serve import loadtest_bodies

        return loadtest_bodies(model, tracking_uri, rows)

    def render_dashboard(self, found: dict[str, Any], alerts: list[dict[str, Any]]) -> str:
        from keel.monitoring import render_dashboard

        return render_dashboard(found, alerts)

    def monitor_table(self) -> tuple[tuple[str, ...], Any]:
        from keel.families.tabular.monitor import monitor_table

        return monitor_table()

    def write_card(
        self, document: dict[str, Any], info: dict[str, Any], out: Any, root: Any
    ) -> dict[str, str]:
        from keel.pipeline._cards import write_tabular_card

        return write_tabular_card(document, info, out, root)

    def experiment_kind(self, task: Any) -> str:
        return "classes" if task.labelled_classes else "numbers"


FAMILY = TabularFamily()
