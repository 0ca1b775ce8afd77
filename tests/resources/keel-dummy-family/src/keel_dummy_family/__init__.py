"""``task: constant``: every row gets the mean (or median) of the target seen in training.

A model family from outside Keel, found through the ``keel.families`` entry point. It
uses only Keel's public generic parts: the stage runner, the registry adapter
(``log_pyfunc_package``), the serving core (``create_family_app``), the monitoring
report and the card writer. Its own keel.yaml section, ``constant:``, is validated by
its own model (``config.py``) and read by its ``train`` stage.
"""

from __future__ import annotations

from typing import Any, ClassVar

from keel.families import Capabilities, Family


class ConstantFamily(Family):
    """A constant-score model: the simplest thing a family can be."""

    name = "constant"
    tasks = ("constant",)
    task_module = "keel_dummy_family.task"
    stage_names = ("ingest", "train", "evaluate", "register", "compare", "report", "alias")
    capabilities: ClassVar[Capabilities] = Capabilities(serves_routes=("/score",))
    config_section = "constant"

    def section_model(self) -> Any:
        from keel_dummy_family.config import ConstantSettings

        return ConstantSettings

    def lifecycle(self) -> tuple[Any, str]:
        from keel_dummy_family.pipeline import GRAPH

        return GRAPH, "evaluate"

    def result(self, state: Any, record: bool) -> dict[str, Any]:
        from keel_dummy_family.pipeline import run_result

        return run_result(state, record)

    def render_run(self, payload: dict[str, Any]) -> None:
        print(f"constant model {payload['model']} scores {payload['metrics']}")

    def reproduce_params(self, document: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return "constant", {}

    def load(self, uri: str, tracking_uri: str) -> Any:
        from keel_dummy_family.package import load_constant

        return load_constant(uri, tracking_uri)

    def serving_parts(self) -> dict[str, Any]:
        from keel.serving import ServedPackage
        from keel_dummy_family.serve import describe, routes, self_test

        return {
            "serve": lambda loaded: ServedPackage(loaded, self_test),
            "routes": routes,
            "describe": describe,
        }

    def loadtest_bodies(self, model: dict[str, Any], tracking_uri: str, rows: int) -> Any:
        import json

        return "/score", [json.dumps({"rows": [{"x": i}] * rows}).encode() for i in range(8)]

    def judge_windows(self, frame, reference, meta, window, min_rows, now) -> Any:
        from keel_dummy_family.monitor import windows

        return windows(frame, reference, meta, window, min_rows, now)

    def render_dashboard(self, found: dict[str, Any], alerts: list[dict[str, Any]]) -> str:
        from keel_dummy_family.monitor import page

        return page(found)

    def monitor_table(self) -> tuple[tuple[str, ...], Any]:
        heads = ("#", "from (UTC)", "requests", "rows scored", "p95 ms")
        return heads, lambda w, num: [
            num(w["metrics"].get("rows_scored")),
            num(w["metrics"].get("latency_p95_ms")),
        ]

    def reference_description(self) -> str:
        return "the training mean and the rows per request"

    def package_evidence(self) -> str:
        return "the same score after save and load"

    def write_card(
        self, document: dict[str, Any], info: dict[str, Any], extra: dict[str, Any], folder: Any
    ) -> dict[str, str]:
        from keel.pipeline._cards import write_sections_card
        from keel_dummy_family.report import card_sections, write_governance

        return write_sections_card(document, info, extra, folder, card_sections, write_governance)

    def experiment_kind(self, task: Any) -> str:
        return "numbers"


FAMILY = ConstantFamily()
