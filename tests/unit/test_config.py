"""keel.yaml: the minimal config works, and every mistake gets one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from keel.config import (
    CANDIDATES,
    ProjectConfig,
    load_config,
    parse_config,
    resolve_settings,
    sqlite_uri,
)
from keel.errors import ConfigError

MINIMAL = {"name": "income", "data": "adult.csv", "target": "income"}


def test_minimal_config_gets_defaults() -> None:
    config = parse_config(MINIMAL)
    assert config.task is None
    assert config.seed == 42
    assert config.split.validation == 0.2 and config.split.test == 0.2
    assert config.candidates == ["lightgbm"]
    assert config.models == ["dummy", "linear", "shallow_tree", "lightgbm"]
    assert set(config.models) <= set(CANDIDATES)
    assert config.budget == 60 and config.cv_folds == 5 and config.gate_margin == 0
    assert config.sensitive_features == []


def test_load_resolves_paths_against_the_config_folder(make_project) -> None:
    path = make_project()
    config = load_config(path)
    assert config.data_path == (path.parent / "adult.csv").resolve()
    assert config.keel_dir == path.parent.resolve() / ".keel"
    assert config.source == path.resolve()
    # a folder works too
    assert load_config(path.parent).data_path == config.data_path


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({**MINIMAL, "targt": "x"}, "unknown key 'targt' (did you mean 'target'?)"),
        ({**MINIMAL, "sed": 1}, "unknown key 'sed' (did you mean 'seed'?)"),
        ({**MINIMAL, "split": {"tset": 0.1}}, "unknown key 'split.tset' (did you mean 'test'?)"),
        ({**MINIMAL, "seed": "abc"}, "key 'seed'"),
        ({**MINIMAL, "seed": -1}, "key 'seed'"),
        ({**MINIMAL, "task": "binarry"}, "(did you mean 'binary'?)"),
        ({**MINIMAL, "candidates": ["xgb"]}, "key 'candidates.0' must be one of"),
        ({**MINIMAL, "candidates": []}, "key 'candidates'"),
        ({**MINIMAL, "sensitive_features": "sex"}, "key 'sensitive_features'"),
        ({**MINIMAL, "split": {"validation": 0.5, "test": 0.5}}, "leave at least 20%"),
        ({**MINIMAL, "split": {"test": 1.5}}, "key 'split.test'"),
        ({"name": "income", "data": "adult.csv"}, "target is required"),
        ({**MINIMAL, "name": "bad name!"}, "key 'name'"),
        ({**MINIMAL, "data": "adult.xlsx"}, "key 'data': must be a file ending in"),
        ({**MINIMAL, "ignore_columns": ["income"]}, "cannot also be in ignore_columns"),
        (None, "the file is empty"),
        (["a", "b"], "the top level must be a mapping"),
        # governance keys
        ({**MINIMAL, "robustness": {"noise": [0, 0.1]}}, "noise levels must be in (0, 10]"),
        ({**MINIMAL, "robustness": {"max_flip_rate": 2}}, "key 'robustness.max_flip_rate'"),
        ({**MINIMAL, "robustness": {"shilling_share": 0.9}}, "key 'robustness.shilling_share'"),
        ({**MINIMAL, "privacy": {"retention_days": 0}}, "key 'privacy.retention_days'"),
        ({**MINIMAL, "privacy": {"opt_out_field": "x"}}, "unknown key 'privacy.opt_out_field'"),
        ({**MINIMAL, "release": {"git_tag": "maybe"}}, "key 'release.git_tag'"),
        ({**MINIMAL, "features": ["age"]}, "key 'features'"),
        ({**MINIMAL, "card": {"contacts": "ops"}}, "key 'card.contacts'"),
        ({**MINIMAL, "gates": {"required": ["runbok"]}}, "(did you mean 'runbook'?)"),
        # ensembles
        ({**MINIMAL, "candidates": ["ensemble"]}, "ensemble combines tuned candidates"),
        ({**MINIMAL, "candidates": ["linear", "ensemble"]}, "list at least one of lightgbm"),
        ({**MINIMAL, "ensemble": {"top_trials": 0}}, "key 'ensemble.top_trials'"),
        ({**MINIMAL, "ensemble": {"rounds": "many"}}, "key 'ensemble.rounds'"),
        ({**MINIMAL, "ensemble": {"size": 3}}, "unknown key 'ensemble.size'"),
    ],
)
def test_bad_configs_name_the_key(raw, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, origin="keel.yaml")
    message = str(info.value)
    assert expected in message
    assert message.startswith("keel.yaml: ")
    assert "\n" not in message


def test_unknown_key_lists_allowed_keys() -> None:
    with pytest.raises(ConfigError, match="allowed keys: name, data, target, task"):
        parse_config({**MINIMAL, "colour": "red"})


def test_missing_config_file_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no such file; write a keel\.yaml"):
        load_config(tmp_path / "keel.yaml")


def test_missing_data_file_names_the_key(tmp_path: Path) -> None:
    (tmp_path / "keel.yaml").write_text(yaml.safe_dump({**MINIMAL, "data": "nope.csv"}))
    with pytest.raises(ConfigError, match=r"key 'data': file 'nope.csv' not found"):
        load_config(tmp_path / "keel.yaml")


def test_invalid_yaml_names_line(tmp_path: Path) -> None:
    (tmp_path / "keel.yaml").write_text("name: income\ntarget: [unclosed\n")
    with pytest.raises(ConfigError, match=r"line \d+, column \d+: not valid YAML"):
        load_config(tmp_path / "keel.yaml")


def test_binary_file_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "keel.yaml").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(tmp_path / "keel.yaml")


def test_settings_default_to_embedded_storage(make_project) -> None:
    config = load_config(make_project())
    settings = resolve_settings(config, environ={})
    assert settings.tracking_uri == sqlite_uri(config.keel_dir / "mlflow.db")
    assert settings.artifact_location.startswith("file://")
    assert settings.data_store == config.keel_dir / "data"


def test_settings_precedence_config_then_environment(make_project) -> None:
    config = load_config(make_project())
    env = {"MLFLOW_TRACKING_URI": "sqlite:////tmp/env.db"}
    assert resolve_settings(config, environ=env).tracking_uri == "sqlite:////tmp/env.db"
    pinned = config.model_copy(update={"tracking_uri": "sqlite:////tmp/cfg.db"})
    assert resolve_settings(pinned, environ=env).tracking_uri == "sqlite:////tmp/cfg.db"


def test_config_is_immutable() -> None:
    config = parse_config(MINIMAL)
    with pytest.raises(Exception, match="frozen"):
        config.seed = 1  # type: ignore[misc]
    assert isinstance(config, ProjectConfig)
