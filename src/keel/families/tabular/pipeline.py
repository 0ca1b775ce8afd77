"""A tabular run's result: the ``keel run --json`` document of the stages' outputs.

The tabular stages themselves are :data:`keel.families.tabular.stages.LIFECYCLE`
(reading, learning, judging) with the recording stages of
:mod:`keel.families.tabular.record`.
"""

from __future__ import annotations

from typing import Any

from keel.families.tabular.record import assessment_document, full_report


def run_result(state: Any, record: bool) -> dict[str, Any]:
    """The ``keel run --json`` fields of a finished run (``record=False``: read-only)."""
    # outputs load only when read: an identical re-run reads the report, not the models
    values = state.values
    if not record:
        labels, assessment = values["labels"], values["assessment"]
        return dict(
            run_id="",
            experiment_id="",
            model={"name": "", "version": None, "alias": None, "candidate": values["best"].name},
            task=labels.task,
            primary_metric=labels.primary.name,
            metrics=assessment.test_metrics,
            candidates=[
                {
                    "name": c.name,
                    "validation": c.validation_metrics,
                    "test": values["all_test"][c.name],
                }
                for c in values["trained"]
            ],
            data={"digest": values["dataset"].digest, "split_digest": values["splits"].digest},
            reports={},
            assessment=assessment_document(values),
            tuning={},
        )
    run, alias = values["run"], values["alias"]
    report = full_report(run, values["versus"], alias).to_dict()  # JSON-ready, as printed
    return dict(
        run_id=run["run_id"],
        experiment_id=run["experiment_id"],
        model={
            **report["model"],
            "uri": f"models:/{run['name']}@{alias}"
            if alias
            else f"models:/{run['name']}/{run['version']}",
        },
        task=report["task"],
        primary_metric=report["primary_metric"],
        metrics=report["test_metrics"],
        assessment=report["assessment"],
        tuning=report["tuning"],
        candidates=report["candidates"],
        data=report["data"],
        reports={**values["reports"], **values["cards"]},
    )
