"""`keel validate`: schemas written, edited, enforced; every violation named with its rows."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from keel.cli import app
from keel.data import (
    Schema,
    infer_schema,
    read_schema,
    records_to_frame,
    validate_file,
    write_schema,
)
from keel.errors import DataError

runner = CliRunner()


@pytest.fixture
def files(tmp_path: Path, adult_frame: pd.DataFrame) -> dict[str, Path]:
    good = tmp_path / "good.csv"
    adult_frame.to_csv(good, index=False)
    bad = adult_frame.copy()
    bad["age"] = bad["age"].astype(object)
    bad.loc[3, "age"] = -4
    bad.loc[10, "age"] = "abc"
    bad.loc[5, "sex"] = "Robot"
    bad["extra"] = 1
    bad_path = tmp_path / "bad.csv"
    bad.to_csv(bad_path, index=False)
    schema = tmp_path / "schema.yaml"
    write_schema(infer_schema(adult_frame, "income"), schema)
    return {"good": good, "bad": bad_path, "schema": schema}


def test_schema_file_round_trips_and_is_commented(files) -> None:
    text = files["schema"].read_text()
    assert text.startswith("# Keel schema")
    schema = read_schema(files["schema"])
    assert schema.target == "income" and schema["age"].tolerance == 0.25
    assert "tolerance" not in yaml.safe_load(text)["columns"][1]  # strings carry no tolerance


def test_good_data_is_valid(files) -> None:
    result = validate_file(files["good"], files["schema"])
    assert result.valid and result.to_dict()["violations"] == []


def test_every_violation_is_listed_with_rows(files) -> None:
    result = validate_file(files["bad"], files["schema"])
    found = {(v["column"], v["check"]): v for v in result.to_dict()["violations"]}
    assert found[("age", "type integer")]["examples"] == [{"row": 11, "value": "abc"}]
    range_rule = next(k for k in found if k[0] == "age" and k[1].startswith("in range"))
    assert found[range_rule]["examples"][0]["row"] == 4
    assert found[("sex", "isin(['Female', 'Male'])")]["failing_rows"] == 1
    assert found[("extra", "not in the schema")]["failing_rows"] == len(pd.read_csv(files["bad"]))


def test_tolerance_widens_ranges_but_keeps_non_negative(adult_frame) -> None:
    schema = infer_schema(adult_frame, "income")
    low, high = schema["age"].allowed_range()
    span = schema["age"].maximum - schema["age"].minimum
    assert low == 0.0 and high == pytest.approx(schema["age"].maximum + 0.25 * span)


def test_serving_enforces_the_same_rules(adult_frame) -> None:
    schema = infer_schema(adult_frame, "income")
    row = json.loads(adult_frame.drop(columns=["income"]).head(1).to_json(orient="records"))[0]
    _, errors = records_to_frame([{**row, "sex": "Mael"}], schema)
    assert "is not a known category (did you mean 'Male'?)" in errors[0].message
    _, errors = records_to_frame([{**row, "age": 500}], schema)
    assert "outside the allowed range" in errors[0].message


def test_format_patterns_are_inferred_and_checked() -> None:
    n = 60
    frame = pd.DataFrame(
        {
            "email": [f"user{i}@example.org" for i in range(n)],
            "day": [d.strftime("%Y-%m-%d") for d in pd.date_range("2024-01-01", periods=n)],
            "y": ["a", "b"] * (n // 2),
        }
    )
    schema = infer_schema(frame, "y")
    assert schema["email"].pattern and "@" in schema["email"].pattern
    assert schema["day"].pattern == r"^\d{4}-\d{2}-\d{2}$"
    frame.loc[2, "day"] = "yesterday"
    from keel.data import validate_frame

    assert {v.column for v in validate_frame(frame, schema)} == {"day"}


def test_id_columns_must_stay_unique() -> None:
    frame = pd.DataFrame({"code": [f"c{i}" for i in range(40)], "y": ["a", "b"] * 20})
    schema = infer_schema(frame, "y")
    assert schema["code"].role == "id"
    frame.loc[1, "code"] = "c0"
    from keel.data import validate_frame

    assert any(v.column == "code" and "unique" in v.check for v in validate_frame(frame, schema))


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"target": "y", "columns": [{"name": "y", "kind": "strng"}]}, "did you mean 'string'"),
        (
            {"target": "y", "columns": [{"name": "y", "kind": "string", "colour": 1}]},
            "unknown key 'colour'",
        ),
        ({"target": "y", "columns": [{"name": "y"}]}, "missing 'kind'"),
        ({"target": "z", "columns": [{"name": "y", "kind": "string"}]}, "target 'z'"),
        (
            {"target": "y", "columns": [{"name": "y", "kind": "float", "minimum": "low"}]},
            "minimum must be a number",
        ),
        (
            {"target": "y", "columns": [{"name": "y", "kind": "string", "pattern": "("}]},
            "not a valid regex",
        ),
        ({"columns": "nope"}, "must be a mapping"),
    ],
)
def test_hand_edited_schema_errors_name_column_and_key(tmp_path: Path, document, message) -> None:
    path = tmp_path / "schema.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        read_schema(path)


def test_cli_validate_exit_codes_and_reports(files, tmp_path: Path) -> None:
    good = runner.invoke(
        app,
        [
            "validate",
            str(files["good"]),
            "--schema",
            str(files["schema"]),
            "--json",
            "--report",
            str(tmp_path / "r1"),
        ],
    )
    assert good.exit_code == 0, good.output
    body = json.loads(good.stdout)
    assert body["valid"] and Path(body["reports"]["html"]).is_file()
    bad = runner.invoke(
        app,
        [
            "validate",
            str(files["bad"]),
            "--schema",
            str(files["schema"]),
            "--report",
            str(tmp_path / "r2"),
        ],
    )
    assert bad.exit_code == 1
    assert (
        "finding:" in bad.stderr
        and "type integer fails on 1 row(s) (e.g. row 11: 'abc')" in bad.stderr
    )
    html = (tmp_path / "r2" / "validation.html").read_text()
    assert "Robot" in html and "<svg" in html
    profile = json.loads((tmp_path / "r2" / "profile.json").read_text())
    assert profile["rows"] == len(pd.read_csv(files["bad"]))


def test_cli_write_schema_never_overwrites(files, tmp_path: Path) -> None:
    out = tmp_path / "new.yaml"
    first = runner.invoke(
        app,
        [
            "validate",
            str(files["good"]),
            "--target",
            "income",
            "--write-schema",
            str(out),
            "--report",
            str(tmp_path / "r"),
        ],
    )
    assert first.exit_code == 0 and out.is_file()
    before = out.read_text()
    again = runner.invoke(app, ["validate", str(files["good"]), "--write-schema", str(out)])
    assert again.exit_code == 2 and "already exists; pass --force" in again.stderr
    assert out.read_text() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.csv"], "no such file"),
        (["{good}", "--schema", "nope.yaml"], "no such schema file"),
        (["{good}", "--target", "incme"], "did you mean 'income'"),
    ],
)
def test_cli_validate_bad_input(files, args, message) -> None:
    argv = ["validate", *[a.format(good=files["good"]) for a in args]]
    result = runner.invoke(app, argv)
    assert result.exit_code == 2 and message in result.stderr


def test_schema_digest_is_stable(adult_frame) -> None:
    a = infer_schema(adult_frame, "income")
    b = Schema.from_dict(a.to_dict())
    assert a.digest == b.digest
