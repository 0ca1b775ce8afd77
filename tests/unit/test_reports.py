"""The typed run report: read back, completed, refused with the missing part's name."""

from __future__ import annotations

import pytest

from keel.errors import DataError
from keel.reports import ModelSummary, RunReport, build_card, words


def _report() -> RunReport:
    return RunReport(
        run_id="r1",
        task="regression",
        primary_metric="rmse",
        model=ModelSummary(name="prices", version="3", candidate="lightgbm"),
        test_metrics={"rmse": 1.5, "mae": 1.0},
        assessment={
            "intervals": {"rmse": {"value": 1.5, "low": 1.2, "high": 1.8}},
            "fairness": {
                "judged": False,
                "passed": True,
                "min_group_size": 30,
                "headline": "rmse",
                "breaches": [],
                "limits": {},
                "task": "regression",
                "features": {
                    "region": {
                        "measures": {"rmse_difference": 0.4},
                        "groups": [
                            {
                                "group": "north",
                                "rows": 40,
                                "rmse": {"value": 1.3, "low": 1.1, "high": 1.6},
                            },
                            {
                                "group": "south",
                                "rows": 50,
                                "rmse": {"value": 1.7, "low": 1.4, "high": 2.0},
                            },
                        ],
                    }
                },
            },
        },
        data={"source": "prices.csv", "digest": "d", "rows": 90, "split_sizes": {"test": 90}},
        schema={"columns": [{"name": "region", "kind": "string"}]},
    )


def test_round_trip_and_completion() -> None:
    report = _report()
    again = RunReport.from_dict(report.to_dict())
    assert again == report
    done = report.completed("champion", {"promote": True, "reason": "better"})
    assert done.model.alias == "champion" and done.assessment["versus_champion"]["promote"]
    assert report.model.alias is None and "versus_champion" not in report.assessment


@pytest.mark.parametrize(
    ("document", "missing"),
    [
        ({"task": "binary", "primary_metric": "roc_auc", "model": {}}, "run_id"),
        (
            {"run_id": "r", "task": "binary", "primary_metric": "roc_auc", "model": {}},
            "model.candidate",
        ),
        ([1, 2], "not a JSON object"),
    ],
)
def test_a_report_missing_a_part_is_refused_by_name(document, missing) -> None:
    with pytest.raises(DataError, match=missing):
        RunReport.from_dict(document, origin="report.json of run r")


def test_a_regression_card_shows_its_error_by_group_in_words() -> None:
    sections = dict(build_card(_report(), {}, {"name": "prices", "version": "3"}))
    fairness = sections["Fairness"]
    bars = [b for kind, b in fairness if kind == "bars"]
    assert bars and bars[0][0] == "RMSE (root mean squared error) by region"
    assert [label for label, *_ in bars[0][1]] == ["north (n=40)", "south (n=50)"]
    table = next(b for kind, b in fairness if kind == "table")
    assert ["region", "RMSE difference (root mean squared error)", "0.4000"] in table[1]
    assert words("demographic_parity_difference") == "Demographic parity difference"
