"""`keel experiment`: A/B tests of model versions.

`design` (sample size and duration), `start` / `stop` / `status` / `list` (the
experiment lives in the prediction log's database, which every `keel serve` worker
reads), `analyze` (effects, SRM, sequential p-values, the decision; `--html` for the
page) and `conclude` (promote through the release gates when the decision is ship,
record the test on both versions, the card and `keel history`).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from keel.cli._common import ConfigOpt, DebugOpt, JsonOpt, app
from keel.cli._errors import exit_codes

experiment = typer.Typer(
    help=(
        "A/B tests of model versions, statistics done right: design (sample size and"
        " duration), start / stop / status / list, analyze, conclude."
    ),
    no_args_is_help=True,
)
NameOfTest = Annotated[str, typer.Argument(help="The experiment's name (e.g. ranker-v7).")]
LogOpt = Annotated[
    str | None,
    typer.Option(
        "--log", help="The prediction log (a SQLite path or database URL; default: keel.yaml's)."
    ),
]
app.add_typer(experiment, name="experiment")


@experiment.callback()
def _needs_the_extra() -> None:
    # A/B tests are the [experiments] extra (statsmodels): say so before any subcommand
    # starts, rather than after an experiment was started that cannot be analysed
    from keel._extras import require

    with exit_codes(False):
        require("experiments", "statsmodels")


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


def _log_and_registry(config: object, log: str | None, must_exist: bool = True) -> tuple[Any, str]:
    """``(project, log URL)``: the project's prediction log unless --log names one.

    With --log the project is only read when there is one to read (None otherwise):
    `status`, `list`, `analyze` and `stop` need nothing else.
    """
    from pathlib import Path

    from keel.config import load_config
    from keel.errors import ConfigError, KeelInputError
    from keel.serving import log_url

    project = None
    try:
        project = load_config(config)  # type: ignore[arg-type]
    except ConfigError:
        if log is None:
            raise
    if log is None and project is not None and project.serving.prediction_log is None:
        raise KeelInputError(
            "the prediction log is off (serving.prediction_log: null): experiments are kept"
            " in it; turn it on or pass --log"
        )
    target = log or project.serving.prediction_log  # type: ignore[union-attr]
    url = log_url(target, project.root if project is not None else Path.cwd())
    if must_exist and url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.exists():
            raise KeelInputError(f"no prediction log at {path}: start an experiment first")
    return project, url


def _project_of(project: Any, config: object) -> Any:
    """The project (start and conclude need its registry): read it again for its error."""
    from keel.config import load_config

    return project if project is not None else load_config(config)  # type: ignore[arg-type]


def _family(name: str, version: str, tracking_uri: str) -> str:
    """What the version's answers are (``lists``, ``classes``, ``numbers``): its family says."""
    from keel.families import FAMILIES
    from keel.registry import package_documents
    from keel.tasks import get_task

    meta, _ = package_documents(f"{name}/{version}", tracking_uri, ())
    return FAMILIES.of_metadata(meta).experiment_kind(get_task(str(meta.get("task"))))


def _check_plan(split: float, planned_per_arm: int | None) -> None:
    from keel.errors import KeelInputError

    if not 1 <= split <= 99:
        raise KeelInputError(f"--split is the challenger's percent of units, 1..99; got {split:g}")
    if planned_per_arm is not None and planned_per_arm < 2:
        raise KeelInputError("--planned-per-arm must be at least 2")


def _same_kind(name: str, challenger: str, current: str, tracking_uri: str) -> str:
    """What both versions answer (``lists``, ``classes``, ``numbers``); exit 2 if they differ."""
    from keel.errors import KeelInputError

    kind = _family(name, challenger, tracking_uri)
    if kind != _family(name, current, tracking_uri):
        raise KeelInputError(
            f"version {challenger}'s answers are {kind} and the champion's (version"
            f" {current}) are not: compare models of one task"
        )
    return kind


def _guardrails(values: list[str]) -> dict[str, float]:
    from keel.errors import KeelInputError
    from keel.monitoring._experiments import DEFAULT_GUARDRAILS

    if not values:
        return dict(DEFAULT_GUARDRAILS)
    found: dict[str, float] = {}
    for value in values:
        name, _, margin = value.partition("=")
        try:
            found[name.strip()] = float(margin)
        except ValueError:
            raise KeelInputError(
                f"--guardrail {value!r}: write METRIC=MARGIN (e.g. latency_ms=10)"
            ) from None
    return found


@experiment.command()
def start(
    name: NameOfTest,
    challenger: Annotated[
        str, typer.Option(help="The registered version to test against the champion.")
    ],
    split: Annotated[float, typer.Option(help="Percent of units sent to the challenger.")] = 50.0,
    unit: Annotated[
        str, typer.Option(help="The request field naming a unit (sticky arm per unit).")
    ] = "user_id",
    metric: Annotated[
        list[str] | None,
        typer.Option(
            help="Success metric (repeat): an outcome sent on /feedback (conversion), or"
            " accuracy / abs_error / hit_rate / requests from the log."
        ),
    ] = None,
    guardrail: Annotated[
        list[str] | None,
        typer.Option(
            help="METRIC=MARGIN that may not get worse by more than MARGIN (repeat;"
            " default latency_ms=10 and error_rate=0.01)."
        ),
    ] = None,
    alpha: Annotated[float, typer.Option(help="False-positive rate (two-sided).")] = 0.05,
    planned_per_arm: Annotated[
        int | None, typer.Option(help="Units per arm planned (see `keel experiment design`).")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="The registered model (default: keel.yaml's name).")
    ] = None,
    champion: Annotated[str, typer.Option(help="The alias the servers follow.")] = "champion",
    salt: Annotated[
        str | None,
        typer.Option(
            help="Seed of the assignment (default: random). Reuse one only to reproduce an"
            " assignment; a new salt reshuffles every unit."
        ),
    ] = None,
    log: LogOpt = None,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Start an A/B test: running `keel serve` workers route units to the challenger.

    Each request naming a unit (the body's `unit`, or the --unit field in its first
    row; a recommender's user_id) goes to the arm a salted hash of the unit gives —
    the same on every worker, request and restart. The answer says the arm; the
    prediction log records experiment, arm and unit. Servers pick the experiment up
    within their poll interval (5 s). Example: keel experiment start ranker-v7
    --challenger 7 --split 50 --metric conversion --planned-per-arm 14751.
    Exit codes: 0 started, 2 a bad option, an unknown version, or one already running.
    """
    from keel.config import resolve_settings
    from keel.errors import KeelInputError
    from keel.monitoring._experiments import check_settings, start_experiment
    from keel.registry import alias_version, mlflow_scope, model_version

    with exit_codes(debug):
        _check_plan(split, planned_per_arm)
        project, url = _log_and_registry(config, log, must_exist=False)
        project = _project_of(project, config)
        uri = resolve_settings(project).tracking_uri
        name_of_model = model or project.name
        with mlflow_scope(uri) as client:
            model_version(client, f"{name_of_model}/{challenger}", uri)  # exists, or exit 2
            current = alias_version(client, name_of_model, champion)
        if current is None:
            raise KeelInputError(
                f"{name_of_model}@{champion} does not exist: nothing to compare the challenger"
                " with; promote a champion first"
            )
        family = _same_kind(name_of_model, challenger, current, uri)
        settings = {
            "metrics": list(metric or []),
            "guardrails": _guardrails(list(guardrail or [])),
            "alpha": alpha,
            "planned_per_arm": planned_per_arm,
            "task_family": family,
            "champion_alias": champion,
        }
        check_settings(settings, family)
        if salt is not None and not 1 <= len(salt) <= 64:
            raise KeelInputError("--salt has 1 to 64 characters")
        found = start_experiment(
            url, name, name_of_model, current, challenger, split, unit, settings, salt=salt
        )
        if json_out:
            print(json.dumps(found.to_dict()))
            return
        Console(stderr=True).print(
            f"experiment {name} running: {split:g} % of units (field {unit!r}) to"
            f" {name_of_model} version {challenger}, the rest to version {current}"
            f" ({champion}); servers route within their poll interval."
            + ("" if planned_per_arm else " No planned sample: only the sequential test decides.")
        )


@experiment.command()
def stop(
    name: NameOfTest,
    log: LogOpt = None,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Stop routing: every request goes to the champion again (the data stays).

    Exit codes: 0 stopped, 2 unknown or not running.
    """
    from keel.monitoring._experiments import end_experiment

    with exit_codes(debug):
        _, url = _log_and_registry(config, log)
        found = end_experiment(url, name, "stopped")
        if json_out:
            print(json.dumps(found.to_dict()))
            return
        Console(stderr=True).print(f"experiment {name} stopped; `keel experiment analyze {name}`")


@experiment.command()
def status(
    name: NameOfTest,
    log: LogOpt = None,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Units and requests per arm, days run, progress toward the planned sample.

    Exit codes: 0 shown, 2 unknown experiment.
    """
    from keel.monitoring._experiments import read_experiment
    from keel.monitoring._experiments import status as experiment_status

    with exit_codes(debug):
        _, url = _log_and_registry(config, log)
        found = experiment_status(read_experiment(url, name))
        if json_out:
            print(json.dumps(found))
            return
        _print_counts(found)


def _print_counts(found: dict[str, Any]) -> None:
    e, counts = found["experiment"], found["counts"]
    table = Table(title=f"experiment {e['name']} ({e['status']}), {counts['days']:g} days")
    for column in ("arm", "version", "units", "requests"):
        table.add_column(column)
    for arm in ("champion", "challenger"):
        table.add_row(
            arm,
            e[f"{arm}_version"],
            f"{counts['units'][arm]:,}",
            f"{counts['requests'][arm]:,}",
        )
    Console().print(table)
    planned = counts.get("planned_per_arm")
    Console(stderr=True).print(
        f"units in both arms (left out): {counts['units_in_both_arms']}; "
        + (
            f"progress {counts['progress']:.0%} of {planned:,} units per arm"
            if planned
            else "no planned sample"
        )
    )


@experiment.command(name="list")
def list_(
    log: LogOpt = None,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Every experiment in the prediction log, oldest first.

    Exit codes: 0 listed, 2 no prediction log.
    """
    from keel.monitoring._experiments import list_experiments

    with exit_codes(debug):
        _, url = _log_and_registry(config, log)
        found = list_experiments(url)
        if json_out:
            print(json.dumps({"experiments": [f.to_dict() for f in found]}))
            return
        table = Table(title="experiments")
        for column in ("name", "model", "champion", "challenger", "split", "status", "decision"):
            table.add_column(column)
        for f in found:
            table.add_row(
                f.name,
                f.model_name,
                f.champion_version,
                f.challenger_version,
                f"{f.split:g} %",
                f.status,
                (f.result or {}).get("decision", "—"),
            )
        Console().print(table)


@experiment.command()
def analyze(
    name: NameOfTest,
    html: Annotated[
        str | None, typer.Option("--html", help="Also write the experiment's HTML page here.")
    ] = None,
    log: LogOpt = None,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Effects with intervals, p-values, SRM, guardrails and the decision, now.

    Per metric: challenger − champion (absolute and relative) with its interval; the
    fixed-horizon p-value (two-proportion z, Welch's t, or the delta method for ratios;
    CUPED when a pre-period exists), Holm-corrected over the success metrics; the
    always-valid mSPRT p-value (safe to look every day). A sample-ratio mismatch
    (chi-square p < 0.001) blocks any decision. Decision: ship, keep the champion or
    keep running, with the reason. Exit codes: 0 analysed (whatever the decision),
    2 unknown experiment or a metric with no data.
    """
    from keel.monitoring._experiments import analyze as analyse
    from keel.monitoring._experiments import read_experiment

    with exit_codes(debug):
        _, url = _log_and_registry(config, log)
        logged = read_experiment(url, name)
        found = analyse(logged)
        if html:
            found["html"] = _write_page(found, logged, html)
        if json_out:
            print(json.dumps(found, default=str))
            return
        _print_analysis(found)


def _write_page(found: dict[str, Any], logged: Any, target: str) -> str:
    from pathlib import Path

    from keel.monitoring._experiment_page import render_experiment_page
    from keel.monitoring._experiments import timeline
    from keel.reports._pages import atomic_write

    path = Path(target)
    atomic_write(path, render_experiment_page(found, timeline(logged)))
    return str(path)


def _g(value: Any, spec: str = ".4g") -> str:
    return "—" if value is None else format(value, spec)


def _print_analysis(found: dict[str, Any]) -> None:
    _print_counts(found)
    table = Table(title="challenger − champion")
    for column in ("metric", "role", "champion", "challenger", "effect", "interval", "p", "seq. p"):
        table.add_column(column)
    for x in found["effects"]:
        table.add_row(
            x["metric"],
            x["role"],
            _g(x["control"]),
            _g(x["treatment"]),
            _g(x["absolute"], "+.4g"),
            f"{_g(x['low'], '+.4g')} to {_g(x['high'], '+.4g')}",
            _g(x.get("holm_p_value") or x["p_value"], ".3g"),
            _g(x["sequential_p_value"], ".3g"),
        )
    Console().print(table)
    srm = found["srm"]
    Console(stderr=True).print(
        f"SRM p {srm['p_value']:.3g}{' FLAGGED' if srm['flagged'] else ''}. Decision:"
        f" {found['decision'].upper()} — {found['reason']}"
        + (f"\npage: {found['html']}" if found.get("html") else "")
    )


@experiment.command()
def conclude(
    name: NameOfTest,
    force: Annotated[
        bool, typer.Option("--force", help="Ship whatever the decision (needs --reason).")
    ] = False,
    reason: Annotated[str | None, typer.Option(help="Why --force: recorded.")] = None,
    log: LogOpt = None,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """End an A/B test on its decision, and record it where the model's evidence lives.

    ship: the challenger is promoted to the alias the servers follow, through the
    release gates (as `keel promote`). keep the champion: nothing moves. keep running:
    refused (exit 1) — wait, or `--force --reason` to ship anyway. Either way the
    design, counts, results and decision are recorded on both versions (tag
    keel.experiment.NAME; experiments/NAME/ on their runs: the analysis and its page),
    in the model card's "A/B test results" and in `keel history`; routing ends.
    Exit codes: 0 concluded, 1 keep running or a gate refused the promotion, 2 unknown
    experiment, a metric with no data, or --force without --reason.
    """
    from keel.config import resolve_settings
    from keel.errors import KeelFinding, KeelInputError
    from keel.monitoring._experiments import analyze as analyse
    from keel.monitoring._experiments import end_experiment, read_experiment

    with exit_codes(debug):
        if force and not (reason and reason.strip()):
            raise KeelInputError("--force needs --reason: say why the decision is overridden")
        project, url = _log_and_registry(config, log)
        project = _project_of(project, config)
        logged = read_experiment(url, name)
        e = logged.experiment
        if e.status == "concluded":
            raise KeelInputError(
                f"experiment {name!r} is already concluded ({(e.result or {}).get('decision')})"
            )
        found = analyse(logged)
        decision = found["decision"]
        if decision == "keep running" and not force:
            raise KeelFinding(
                f"experiment {name} is not concluded: keep running — {found['reason']};"
                " wait for more units, or `--force --reason '...'` to ship anyway"
            )
        uri = resolve_settings(project).tracking_uri
        alias = e.settings.get("champion_alias", "champion")
        promoted = None
        if decision == "ship" or force:
            promoted = _promote(
                project,
                uri,
                e,
                alias,
                reason=f"A/B test {name}: "
                + (f"forced ({reason})" if force and decision != "ship" else found["reason"]),
                force=force,
            )
        found["promoted"] = promoted is not None
        found["forced"] = bool(force and decision != "ship")
        page = _record(uri, logged, found, reason if force else None)
        end_experiment(url, name, "concluded", found)
        if json_out:
            print(json.dumps(found | {"page_artifact": page}, default=str))
            return
        _print_analysis(found)
        Console(stderr=True).print(
            f"concluded: {decision}"
            + (
                f"; {e.model_name}@{alias} is now version {e.challenger_version}"
                if promoted
                else ""
            )
            + f"; recorded on versions {e.champion_version} and {e.challenger_version}"
        )


def _promote(project: Any, uri: str, e: Any, alias: str, reason: str, force: bool) -> Any:
    """Promote the challenger as `keel promote` does: its gates first."""
    from keel.pipeline import check_version
    from keel.registry import mlflow_scope, promote

    checklist = check_version(f"{e.model_name}/{e.challenger_version}", uri, project.gates)
    with mlflow_scope(uri) as client:
        return promote(
            client,
            uri,
            e.model_name,
            e.challenger_version,
            to=alias,
            force=force and bool(checklist.promotion_blockers),
            reason=reason,
            failed=checklist.promotion_blockers,
        )


def _record(uri: str, logged: Any, found: dict[str, Any], forced: str | None) -> str:
    """The experiment on both versions, their runs and the model's history."""
    import time

    from keel.monitoring._experiment_page import render_experiment_page
    from keel.monitoring._experiments import timeline
    from keel.registry import mlflow_scope, record_experiment

    e = logged.experiment
    concluded = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    base = {
        "name": e.name,
        "champion_version": e.champion_version,
        "challenger_version": e.challenger_version,
        "split": e.split,
        "decision": found["decision"],
        "reason": found["reason"],
        "forced": forced,
        "promoted": found["promoted"],
        "concluded": concluded,
        "days": found["counts"]["days"],
        "units": found["counts"]["units"],
        "srm_p_value": round(float(found["srm"]["p_value"]), 6),
        "effects": [
            {
                k: (round(v, 6) if isinstance(v, float) else v)
                for k, v in x.items()
                if k
                in (
                    "metric",
                    "role",
                    "control",
                    "treatment",
                    "absolute",
                    "relative",
                    "low",
                    "high",
                    "p_value",
                    "sequential_p_value",
                )
            }
            for x in found["effects"]
        ],
    }
    summaries = {
        e.champion_version: base | {"role": "champion"},
        e.challenger_version: base | {"role": "challenger"},
    }
    documents = {
        "analysis.json": json.dumps(found, default=str, indent=2),
        "experiment.html": render_experiment_page(found, timeline(logged)),
    }
    why = f"A/B test {e.name}: {found['decision']} — {found['reason']}" + (
        f" (forced: {forced})" if forced else ""
    )
    with mlflow_scope(uri) as client:
        record_experiment(client, e.model_name, e.name, summaries, documents, why)
    return f"experiments/{e.name}/experiment.html"
