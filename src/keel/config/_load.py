"""Reading ``keel.yaml``: one clear line for every way it can be wrong."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from keel.config._model import DvcSource, PiiConfig, ProjectConfig, SplitConfig, SqlSource
from keel.errors import ConfigError, did_you_mean

CONFIG_FILENAME = "keel.yaml"
MAX_CONFIG_BYTES = 1_000_000


def load_config(path: str | Path | None = None) -> ProjectConfig:
    """Read and check a ``keel.yaml``.

    Parameters
    ----------
    path
        The file, or a folder holding ``keel.yaml``; the current folder when ``None``.

    Raises
    ------
    ConfigError
        With one line naming the file, the key and what is allowed.
    """
    file = Path(path) if path is not None else Path.cwd() / CONFIG_FILENAME
    if file.is_dir():
        file = file / CONFIG_FILENAME
    if not file.exists():
        raise ConfigError(
            f"{file}: no such file; write a keel.yaml with at least name, data and target"
            " (see docs/configuration.md) or pass -c PATH"
        )
    if file.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{file}: {file.stat().st_size} bytes is too large for a config file")
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: not UTF-8 text ({exc.reason})") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{file}:{where}: not valid YAML: {problem}") from exc
    config = parse_config(raw, origin=str(file))
    config = config.with_root(file.parent, source=file.resolve())
    from keel.families import FAMILIES

    folders = FAMILIES.for_task(config.task).capabilities.reads_folders
    if folders and config.data_path is not None and not config.data_path.exists():
        raise ConfigError(
            f"{file}: key 'data': folder or file {config.data!r} not found (looked at"
            f" {config.data_path}); fix the path, relative to the folder of keel.yaml"
        )
    if not folders and config.data_path is not None and not config.data_path.is_file():
        raise ConfigError(
            f"{file}: key 'data': file {config.data!r} not found (looked at {config.data_path});"
            " fix the path, relative to the folder of keel.yaml"
        )
    for key in ("users", "items", "queries"):  # the other files keel.yaml may name
        spec = getattr(config, key)
        path = config.table_path(spec)
        if path is not None and not path.is_file():
            raise ConfigError(
                f"{file}: key {key!r}: file {spec!r} not found (looked at {path}); fix the"
                " path, relative to the folder of keel.yaml"
            )
    if config.schema_path is not None and not config.schema_path.is_file():
        raise ConfigError(
            f"{file}: key 'schema': file {config.schema_file!r} not found (looked at"
            f" {config.schema_path}); write one with `keel validate DATA --write-schema FILE`"
        )
    return config


def parse_config(raw: Any, origin: str = CONFIG_FILENAME) -> ProjectConfig:
    """Check a parsed YAML document and return the config (paths not resolved)."""
    if raw is None:
        raise ConfigError(f"{origin}: the file is empty; it needs at least name, data and target")
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{origin}: the top level must be a mapping of keys (name, data, target, ...),"
            f" got a {type(raw).__name__}"
        )
    try:
        return ProjectConfig.model_validate(dict(raw))
    except ValidationError as exc:
        raise ConfigError(f"{origin}: {_describe(exc)}") from exc


_NESTED = {"split": SplitConfig, "sql": SqlSource, "dvc": DvcSource, "pii": PiiConfig}


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Drop pydantic's union tags (``data.sql.url`` → ``data.url``)."""
    if len(loc) > 1 and loc[0] == "data" and loc[1] in ("file", "sql", "dvc"):
        return (loc[0], *loc[2:])
    return loc


def _allowed_keys(loc: tuple[Any, ...]) -> tuple[str, ...]:
    model: Any = ProjectConfig
    if len(loc) > 2 and loc[0] == "data" and loc[1] in _NESTED:
        model = _NESTED[loc[1]]
    elif len(loc) > 1:
        model = _NESTED.get(loc[0])
    if model is None:
        return ()
    return tuple(f.alias or name for name, f in model.model_fields.items())


def _describe(exc: ValidationError) -> str:
    """Turn pydantic's errors into one line: key, problem, what is allowed."""
    messages = []
    for error in exc.errors(include_url=False):
        raw_loc = tuple(error.get("loc", ()))
        loc = _clean_loc(raw_loc)
        key = ".".join(str(p) for p in loc) or "(top level)"
        kind = error.get("type", "")
        received = error.get("input")
        if kind == "extra_forbidden":
            allowed = _allowed_keys(raw_loc)
            hint = did_you_mean(str(loc[-1]), allowed)
            messages.append(f"unknown key '{key}'{hint}; allowed keys: {', '.join(allowed)}")
        elif key == "data" and kind == "string_type":
            messages.append(
                "key 'data' must be a file path, {url: ..., query: ...} for SQL or"
                f" {{dvc: path, rev: ...}} for a DVC-tracked file, got {_short(received)}"
            )
        elif kind == "missing":
            messages.append(f"missing required key '{key}'")
        elif kind == "literal_error":
            expected = error.get("ctx", {}).get("expected", "")
            hint = did_you_mean(str(received), [e.strip(" '") for e in expected.split(",")])
            messages.append(f"key '{key}' must be one of {expected}, got {received!r}{hint}")
        else:
            msg = error.get("msg", "invalid value").removeprefix("Value error, ")
            if not loc:  # a rule across keys: the message names them
                messages.append(msg)
                continue
            shown = "" if "got" in msg else f", got {_short(received)}"
            messages.append(f"key '{key}': {msg}{shown}")
    first = messages[0]
    more = len(messages) - 1
    return first + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
