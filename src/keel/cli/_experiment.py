"""`keel experiment`: A/B tests of model versions (today: `design`)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from keel.cli._common import ConfigOpt, DebugOpt, JsonOpt, app
from keel.cli._errors import exit_codes

experiment = typer.Typer(
    help="A/B tests of model versions: sample size and duration before you start.",
    no_args_is_help=True,
)
app.add_typer(experiment, name="experiment")


@experiment.command()
def design(
    metric_type: Annotated[
        str, typer.Option(help="proportion (a click, a conversion) or continuous (revenue).")
    ] = "proportion",
    baseline: Annotated[
        float | None,
        typer.Option(help="The metric today: a rate (0.10) or a mean (for continuous)."),
    ] = None,
    mde: Annotated[
        float | None,
        typer.Option(help="Minimum detectable effect: absolute, or relative with --relative."),
    ] = None,
    relative: Annotated[bool, typer.Option(help="--mde is a share of --baseline.")] = False,
    std: Annotated[
        float | None, typer.Option(help="Standard deviation of a continuous metric.")
    ] = None,
    alpha: Annotated[float, typer.Option(help="False-positive rate (two-sided).")] = 0.05,
    power: Annotated[float, typer.Option(help="Chance to detect an effect of --mde.")] = 0.8,
    split: Annotated[
        float, typer.Option(help="Percent of units sent to the challenger (1..99).")
    ] = 50.0,
    method: Annotated[
        str | None,
        typer.Option(help="proportion: pooled (default: the test the analysis runs) or arcsine."),
    ] = None,
    daily_units: Annotated[
        float | None,
        typer.Option(help="Units (users) a day entering the experiment: gives the duration."),
    ] = None,
    unit: Annotated[
        str, typer.Option(help="The request field that names a unit (for --daily-units).")
    ] = "user_id",
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Sample size per arm and duration of an A/B test (two-sided, fixed horizon).

    Without --daily-units, the units a day come from the project's prediction log:
    distinct values of --unit per day over its last 14 complete days (requests when
    the field is absent).

    Proportions use the pooled two-proportion z-test's formula (the test the analysis
    runs; --method arcsine for Cohen's h); continuous metrics the two-sample t-test
    (statsmodels' TTestIndPower) with --std. The duration is the total over
    --daily-units, in days and whole weeks (run whole weeks: weekdays differ). Example:
    keel experiment design --baseline 0.10 --mde 0.01 --daily-units 1000 --json.
    Exit codes: 0 planned, 2 a value out of range (named).
    """
    from keel.errors import KeelInputError
    from keel.evaluation._experiments import design as plan

    with exit_codes(debug):
        if baseline is None or mde is None:
            raise KeelInputError(
                "--baseline and --mde are required (e.g. --baseline 0.10 --mde 0.01)"
            )
        if not 1 <= split <= 99:
            raise KeelInputError(f"--split is the challenger's percent, 1..99; got {split:g}")
        if daily_units is None:
            daily_units = _daily_units_from_log(config, unit)
        try:
            found = plan(
                metric_type,  # type: ignore[arg-type]
                baseline,
                mde,
                relative=relative,
                alpha=alpha,
                power=power,
                treatment_share=split / 100,
                std=std,
                method=method,  # type: ignore[arg-type]
                daily_units=daily_units,
            )
        except ValueError as exc:
            raise KeelInputError(str(exc)) from None
        if json_out:
            print(json.dumps(found.to_dict()))
            return
        table = Table(title=f"A/B test design ({found.method}, two-sided)")
        for column in ("arm", "units"):
            table.add_column(column, justify="right" if column == "units" else "left")
        table.add_row("champion (control)", f"{found.control:,}")
        table.add_row(f"challenger ({split:g} %)", f"{found.treatment:,}")
        table.add_row("total", f"{found.total:,}")
        Console().print(table)
        what = f"{found.baseline:g} → {found.target:g}"
        console = Console(stderr=True)
        console.print(
            f"detects {what} with power {power:g} at alpha {alpha:g}"
            + (
                f"; {found.duration_days} days at {daily_units:g} units a day: run"
                f" {found.duration_weeks} whole week(s)"
                if found.duration_days is not None
                else "; give --daily-units for the duration"
            )
        )


DAY = 86_400


def _daily_units_from_log(config: object, unit: str) -> float | None:
    """Mean distinct units a day over the log's last 14 complete days (None: no log)."""
    import time
    from pathlib import Path

    from keel.config import load_config
    from keel.errors import ConfigError
    from keel.serving import log_url, read_log

    try:
        project = load_config(config)  # type: ignore[arg-type]
    except ConfigError:
        return None
    target = project.serving.prediction_log
    if target is None:
        return None
    url = log_url(target, project.root)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return None
    today = time.time() // DAY * DAY
    try:
        rows = read_log(url, since=today - 14 * DAY)
    except Exception:  # not a prediction log (or unreachable): no duration, said so
        return None
    days: dict[int, set[str]] = {}
    for row in rows:
        if row["time"] >= today:
            continue  # today is not complete
        key = (row.get("inputs") or {}).get(unit, row["request_id"])
        days.setdefault(int(row["time"] // DAY), set()).add(str(key))
    if not days:
        return None
    return sum(len(v) for v in days.values()) / len(days)
