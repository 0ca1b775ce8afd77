"""The command line: help that teaches, exit codes, one-line errors, nothing written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keel import __version__
from keel.cli import app

runner = CliRunner()


def invoke(*args: str, cwd: Path | None = None):
    old = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        return runner.invoke(app, list(args))
    finally:
        os.chdir(old)


def only_the_failure_alert(root: Path) -> bool:
    """Nothing of the run was written: at most the alert of its failure (monitoring.sinks)."""
    written = sorted(p.relative_to(root).as_posix() for p in (root / ".keel").rglob("*"))
    return written in ([], [".keel/alerts.jsonl"])


def test_help_teaches() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("run", "serve"):
        assert command in result.output
    run_help = invoke("run", "--help").output
    assert "champion" in run_help and "--json" in run_help
    serve_help = invoke("serve", "--help").output
    assert "127.0.0.1" in serve_help and "registry" in serve_help


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0 and __version__ in result.output


def test_usage_error_exits_2() -> None:
    assert invoke("run", "--no-such-flag").exit_code == 2
    assert invoke("serve", "--port", "0").exit_code == 2


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"name": "income", "data": "adult.csv", "target": "income", "colour": 1},
            "unknown key 'colour'",
        ),
        (
            {"name": "income", "data": "adult.csv", "target": "incme"},
            "key 'target': 'incme' is not a column of adult.csv (15 columns)"
            " (did you mean 'income'?)",
        ),
        ({"name": "income", "data": "adult.csv", "target": "income", "seed": "x"}, "key 'seed'"),
        (
            {"name": "income", "data": "missing.csv", "target": "income"},
            "key 'data': file 'missing.csv' not found",
        ),
        (
            {
                "name": "income",
                "data": "adult.csv",
                "target": "income",
                "sensitive_features": ["gender"],
            },
            "key 'sensitive_features': 'gender'",
        ),
        (
            {"name": "income", "data": "adult.csv", "target": "income", "task": "regression"},
            "not numeric",
        ),
    ],
)
def test_bad_config_exits_2_with_one_line_and_writes_nothing(make_project, config, message) -> None:
    path = make_project(config)
    result = invoke("run", "-c", str(path))
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert err.startswith("error: ")
    assert message in err
    assert len(err.splitlines()) == 1
    assert "Traceback" not in result.output
    assert only_the_failure_alert(path.parent)


def test_no_config_in_folder(tmp_path: Path) -> None:
    result = invoke("run", cwd=tmp_path)
    assert result.exit_code == 2
    assert "no such file; write a keel.yaml" in result.stderr


def test_empty_data_file(make_project) -> None:
    path = make_project()
    (path.parent / "adult.csv").write_text("")
    result = invoke("run", "-c", str(path), "--json")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "the file is empty" in result.stderr


def test_serve_unknown_model_exits_2(make_project) -> None:
    path = make_project()
    result = invoke("serve", "-c", str(path), "--model", "nothing@champion")
    assert result.exit_code == 2
    assert "no model registry at" in result.stderr and "run `keel run` first" in result.stderr
    assert only_the_failure_alert(path.parent)


def test_internal_error_is_one_line_without_traceback(make_project, monkeypatch) -> None:
    import keel.pipeline

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(keel.pipeline, "run_project", boom)
    path = make_project()
    result = invoke("run", "-c", str(path))
    assert result.exit_code == 3
    assert "internal error: RuntimeError: disk on fire" in result.stderr
    assert "Traceback" not in result.output
    debug = invoke("run", "-c", str(path), "--debug")
    assert isinstance(debug.exception, RuntimeError)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.1.2.3", False),
        ("example.org", False),
    ],
)
def test_only_loopback_counts_as_private(host: str, loopback: bool) -> None:
    from keel.cli._app import is_loopback

    assert is_loopback(host) is loopback


def test_serve_wiring_without_starting_a_server(make_project, monkeypatch) -> None:
    import uvicorn

    import keel.registry
    from keel.registry import LoadedPackage
    from keel.serving import SPEC_ENV, ServingSpec

    monkeypatch.setenv(SPEC_ENV, "")  # registered, so the test leaves the environment as it was
    calls: list[tuple[tuple, dict]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: calls.append((a, k)))
    fake = LoadedPackage("income", "3", "champion", None, None, "binary", (), {})  # type: ignore[arg-type]
    seen: list[str] = []
    monkeypatch.setattr(
        keel.registry, "load_package", lambda uri, tracking: seen.append(uri) or fake
    )
    from keel.families import FAMILIES

    monkeypatch.setattr(keel.registry, "package_family", lambda uri, tracking: FAMILIES["tabular"])
    made: list[ServingSpec] = []
    monkeypatch.setattr(
        "keel.serving.create_app_from_spec",
        lambda spec, explain_row=None, package=None: made.append(spec) or "app",
    )
    path = make_project()
    public = invoke("serve", "-c", str(path), "--host", "0.0.0.0", "--port", "9999")
    assert public.exit_code == 0, public.output
    assert "warning: binding 0.0.0.0 exposes the model" in public.stderr
    assert seen == ["income@champion"]
    assert calls[-1] == (("app",), {"host": "0.0.0.0", "port": 9999, "log_level": "warning"})
    assert made[-1].follow_alias == "champion"  # served by alias: follows it
    multi = invoke("serve", "-c", str(path), "--workers", "2", "--model", "income/3")
    assert multi.exit_code == 0 and "warning" not in multi.stderr
    assert calls[-1][0] == ("keel.cli._app:serving_app",)
    assert calls[-1][1]["workers"] == 2 and calls[-1][1]["factory"] is True
    spec = ServingSpec.from_env()  # one typed spec for every worker
    assert spec.model == "income/3" and spec.follow_alias is None  # pinned: not following


def test_configured_schema_is_enforced_before_anything_is_written(
    make_project, adult_frame
) -> None:
    from keel.data import infer_schema, write_schema

    bad = adult_frame.copy()
    bad.loc[4, "sex"] = "Robot"
    path = make_project(
        {"name": "income", "data": "adult.csv", "target": "income", "schema": "schema.yaml"},
        frame=bad,
    )
    write_schema(infer_schema(adult_frame, "income"), path.parent / "schema.yaml")
    result = invoke("run", "-c", str(path))
    assert result.exit_code == 2
    assert (
        "column 'sex': isin(['Female', 'Male']) fails on 1 row(s) (e.g. row 5: 'Robot')"
        in result.stderr
    )
    assert only_the_failure_alert(path.parent)


def test_configured_schema_must_exist_and_agree(make_project, adult_frame) -> None:
    from keel.data import infer_schema, write_schema

    path = make_project(
        {"name": "income", "data": "adult.csv", "target": "income", "schema": "missing.yaml"}
    )
    result = invoke("run", "-c", str(path))
    assert result.exit_code == 2 and "key 'schema': file 'missing.yaml' not found" in result.stderr
    write_schema(infer_schema(adult_frame, "sex"), path.parent / "other.yaml")
    path.write_text(path.read_text().replace("missing.yaml", "other.yaml"))
    result = invoke("run", "-c", str(path))
    assert (
        result.exit_code == 2 and "its target is 'sex' but keel.yaml says 'income'" in result.stderr
    )


def test_leaky_feature_stops_the_run_naming_it(make_project, adult_frame) -> None:
    leaky = adult_frame.assign(bonus_paid=(adult_frame["income"] == ">50K").astype(int))
    path = make_project(frame=leaky)
    result = invoke("run", "-c", str(path))
    assert result.exit_code == 2
    assert "feature 'bonus_paid' alone predicts target 'income'" in result.stderr
    assert "ignore_columns" in result.stderr
    assert only_the_failure_alert(path.parent)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"time_column": "day", "group_column": "sex"}, "cannot both be set"),
        ({"time_column": "dayy"}, "key 'time_column': 'dayy' is not a column"),
        ({"group_column": "income"}, "cannot be the time or group column"),
        ({"leakage_threshold": 0.3}, "key 'leakage_threshold'"),
    ],
)
def test_split_config_errors(make_project, extra, message) -> None:
    config = {"name": "income", "data": "adult.csv", "target": "income", **extra}
    result = invoke("run", "-c", str(make_project(config)))
    assert result.exit_code == 2 and message in result.stderr


@pytest.mark.parametrize(
    ("test", "message"),
    [
        (
            {"kind": "invariance", "feature": "sexx"},
            "'sexx' is not a model feature (did you mean 'sex'?)",
        ),
        ({"kind": "directional", "feature": "race"}, "feature 'race' is not numeric"),
        (
            {"kind": "minimum", "where": {"sex": "Female"}, "metric": "auc", "min": 0.5},
            "metric 'auc' is not one of",
        ),
        ({"kind": "monotone", "feature": "age"}, "key 'behaviour.0'"),
    ],
)
def test_behaviour_config_errors_stop_before_training(make_project, test, message) -> None:
    config = {"name": "income", "data": "adult.csv", "target": "income", "behaviour": [test]}
    result = invoke("run", "-c", str(make_project(config)))
    assert result.exit_code == 2, result.output
    assert message in result.stderr


def test_apikey_prints_a_key_once_and_its_hash_for_keel_yaml() -> None:
    import hashlib
    import json

    made = invoke("apikey", "web", "--scopes", "predict,admin", "--json")
    assert made.exit_code == 0, made.output
    entry = json.loads(made.stdout)
    assert entry["sha256"] == hashlib.sha256(entry["key"].encode()).hexdigest()
    assert entry["scopes"] == ["predict", "admin"] and len(entry["key"]) > 40
    other = json.loads(invoke("apikey", "web", "--json").stdout)
    assert other["key"] != entry["key"]
    table = invoke("apikey", "web")
    assert table.stdout.strip().startswith("- {name: web, sha256: ")
    assert "keel_" in table.stderr and "keel_" not in table.stdout
    bad = invoke("apikey", "web", "--scopes", "root")
    assert bad.exit_code == 2 and "unknown scope 'root'" in bad.stderr


def test_unwritable_output_paths_are_input_errors(tmp_path: Path, adult_frame) -> None:
    """A file where a folder should be: exit 2 naming the path, never 'a bug in Keel'."""
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    data = tmp_path / "ref.csv"
    adult_frame.head(200).to_csv(data, index=False)
    drift = invoke("drift", str(data), str(data), "--html", str(blocker / "drift.html"))
    init = invoke("init", str(blocker / "project"))
    for result in (drift, init):
        assert result.exit_code == 2, result.output
        assert str(blocker) in result.stderr and "bug in Keel" not in result.stderr
    from keel.cli._build import build_files
    from keel.errors import KeelInputError

    with pytest.raises(KeelInputError, match="cannot write"):
        build_files("income", "champion", "1", blocker / "deploy")


def test_a_failed_run_alerts_the_sinks(make_project) -> None:
    path = make_project({"name": "income", "data": "adult.csv", "target": "nope", "budget": 0})
    done = invoke("run", cwd=path.parent)
    assert done.exit_code == 2, done.output
    lines = (path.parent / ".keel" / "alerts.jsonl").read_text().splitlines()
    alert = json.loads(lines[-1])
    assert alert["kind"] == "pipeline_failure" and alert["severity"] == "critical"
    assert alert["stage"] == "ingest" and "'nope'" in alert["message"]
    assert only_the_failure_alert(path.parent)  # nothing else written


def test_the_run_summary_names_the_costliest_stages() -> None:
    from rich.console import Console

    from keel.cli._common import print_costs

    console = Console(record=True, width=200)
    stages = [
        {"name": "tune", "status": "ran", "cpu_seconds": 41.2, "peak_mb": 512.4},
        {"name": "ingest", "status": "ran", "cpu_seconds": 0.1, "peak_mb": 100.0},
        {"name": "explain", "status": "ran", "cpu_seconds": 3.0, "peak_mb": 700.0},
        {"name": "train", "status": "reused", "cpu_seconds": 99.0, "peak_mb": 1.0},
        {"name": "evaluate", "status": "ran", "cpu_seconds": 5.5, "peak_mb": None},
    ]
    print_costs(console, stages)
    text = console.export_text()
    assert text.strip() == (
        "Most CPU: tune 41.2 s (peak 512 MB), evaluate 5.5 s, explain 3.0 s (peak 700 MB)"
    )
