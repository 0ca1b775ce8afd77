"""Where rows come from: files, SQL queries and DVC-tracked files, with their lineage."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from keel._extras import install_line
from keel._git import commit_of
from keel.config import DvcSource, SqlSource
from keel.data._ingest import Dataset, content_digest, read_table
from keel.errors import DataError

INSTALL_HINT = "install it with `{line}`"


def load_data(spec: str | SqlSource | DvcSource, root: Path) -> Dataset:
    """Read the rows of a configured data source, with its lineage.

    ``spec`` is a path (CSV, Parquet, JSON Lines; relative to ``root``), a SQL source
    (SQLAlchemy URL + query) or a DVC source (path in a DVC repo at a revision).
    """
    if isinstance(spec, SqlSource):
        return read_sql(spec.url, spec.query, root)
    if isinstance(spec, DvcSource):
        return read_dvc(spec.dvc, spec.rev, spec.repo, root)
    path = Path(spec).expanduser()
    path = path if path.is_absolute() else (root / path).resolve()
    frame = read_table(path)
    return Dataset(
        frame=frame,
        source=str(path),
        digest=content_digest(frame),
        lineage={"kind": "file", "uri": str(path)},
    )


def display_url(url: str) -> str:
    """The URL without its password, for logs, reports and errors."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparseable URL)"


def _resolve_sqlite(url: str, root: Path) -> str:
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix:
        return prefix + str((root / url[len(prefix) :]).resolve())
    return url


def read_sql(url: str, query: str, root: Path) -> Dataset:
    """Run ``query`` against the database at ``url`` (SQLAlchemy) and return the rows.

    Relative SQLite paths resolve against ``root``. The password never appears in
    messages or lineage.
    """
    import pandas as pd
    import sqlalchemy
    from sqlalchemy import exc as sa_exc

    shown = display_url(url)
    url = _resolve_sqlite(url, root)
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).is_file():
        raise DataError(f"data.url: no SQLite database at {url[len('sqlite:///') :]}")
    try:
        engine = sqlalchemy.create_engine(url)
    except sa_exc.NoSuchModuleError as exc:
        raise DataError(f"data.url {shown}: no SQLAlchemy dialect for it ({exc})") from exc
    except sa_exc.ArgumentError as exc:
        raise DataError(f"data.url: not a valid SQLAlchemy URL ({exc})") from exc
    except ModuleNotFoundError as exc:
        raise DataError(
            f"data.url {shown}: its database driver {exc.name!r} is not installed;"
            f" {INSTALL_HINT.format(line=install_line('postgres'))}"
        ) from exc
    try:
        with engine.connect() as connection:
            frame = pd.read_sql_query(sqlalchemy.text(query), connection)
    except (sa_exc.SQLAlchemyError, pd.errors.DatabaseError) as exc:
        cause = exc.__cause__ if isinstance(exc, pd.errors.DatabaseError) else exc
        detail = str(getattr(cause, "orig", None) or cause or exc).strip().splitlines()[0]
        raise DataError(f"data.query failed on {shown}: {detail}") from exc
    finally:
        engine.dispose()
    if frame.shape[1] == 0 or len(frame) == 0:
        raise DataError(f"data.query on {shown} returned no rows; check the query")
    duplicated = [str(c) for c in frame.columns[frame.columns.duplicated()]]
    if duplicated:
        raise DataError(f"data.query returns column names twice: {', '.join(duplicated)}")
    frame.columns = [str(c) for c in frame.columns]
    return Dataset(
        frame=frame,
        source=shown,
        digest=content_digest(frame),
        lineage={"kind": "sql", "uri": shown, "query": query},
    )


def read_dvc(path: str, rev: str | None, repo: str | None, root: Path) -> Dataset:
    """Read a DVC-tracked file at revision ``rev`` through DVC's Python API."""
    try:
        import dvc.api
        from dvc.exceptions import DvcException
    except ModuleNotFoundError as exc:
        raise DataError(
            "data.dvc: reading DVC-tracked data needs DVC;"
            f" {INSTALL_HINT.format(line=install_line('dvc'))}"
        ) from exc
    repo_path = Path(repo).expanduser() if repo else root
    if not repo_path.is_absolute():
        repo_path = (root / repo_path).resolve()
    where = f"{path}@{rev or 'workspace'} in {repo_path}"
    try:
        with dvc.api.open(path, repo=str(repo_path), rev=rev, mode="rb") as handle:
            content = handle.read()
        url = dvc.api.get_url(path, repo=str(repo_path), rev=rev)
    except (DvcException, FileNotFoundError, OSError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"data.dvc: cannot read {where}: {detail}") from exc
    except Exception as exc:  # DVC raises many SCM error types for bad revisions
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"data.dvc: cannot read {where}: {detail}") from exc
    with tempfile.TemporaryDirectory() as folder:
        local = Path(folder) / Path(path).name
        local.write_bytes(content)
        frame = read_table(local)
    lineage: dict[str, Any] = {
        "kind": "dvc",
        "uri": f"dvc://{repo_path}/{path}",
        "path": path,
        "rev": rev or "workspace",
        "commit": commit_of(repo_path, rev),
        "dvc_cache_url": url,
    }
    return Dataset(
        frame=frame, source=lineage["uri"], digest=content_digest(frame), lineage=lineage
    )
