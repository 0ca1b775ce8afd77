"""Stages as units, and the one runner that runs them.

A :class:`Stage` is a plain function ``stage(inputs, context) -> outputs`` that declares
what it needs (named inputs made by earlier stages, the ``keel.yaml`` keys it reads, the
Keel packages whose code decides its result) and what it makes (named, typed outputs).
A :class:`Graph` checks the wiring when it is defined — every input made by an earlier
stage, no output made twice — not mid-run.

The :class:`Runner` runs a graph in order. Each stage gets a cache key: the digest of
its name, its code version (its own source, its declared version, the source of the
packages it names), the config keys it reads and its inputs' digests. A stage whose key
is stored under ``.keel/stages/<key>/`` (a manifest and one file per output, written
atomically) is **reused, not re-run**; its outputs are loaded only if a later stage that
runs needs them. Transient failures (a locked SQLite store, a tracking server that does
not answer) are retried with back-off; any other error stops the run with the stage's
name on it. Progress, tracking and failure alerts are hooks, not stage code.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import inspect
import json
import os
import pickle
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from keel._version import __version__
from keel.errors import ConfigError, KeelError, KeelInputError, did_you_mean
from keel.pipeline._resources import measure

RAN, REUSED = "ran", "reused"
MANIFEST = "manifest.json"
RUNS_INDEX = "runs.json"
KEEP_RUNS = 3  # the stage entries of this many recent runs are kept
GRACE = 600.0  # seconds: younger entries may belong to a run in progress
STORE_FORMAT = 1


class StageContractError(KeelError):
    """A stage broke its declared contract (a bug in the stage, not bad input)."""


@dataclass(frozen=True)
class Stage:
    """One unit of the lifecycle.

    Parameters
    ----------
    name : str
        Unique within its graph; what progress, errors, alerts and ``stages.json`` say.
    func : callable
        ``func(inputs: dict, context) -> dict`` with exactly the declared outputs.
    inputs : tuple of str
        Names of outputs of earlier stages (or of the graph's sources).
    outputs : mapping of str to type
        Each output's name and the type its value must have (``object``: any).
    reads : tuple of str
        The ``keel.yaml`` keys (dotted) the stage reads: part of its cache key.
    code : tuple of str
        Keel packages whose source decides the stage's result: part of its cache key.
    version : str
        Bump to invalidate stored outputs when behaviour changes without code changes.
    cache : bool
        ``False`` for stages that must run every time.
    fingerprint : callable, optional
        ``fingerprint(context) -> str | None``: the content of what the stage reads from
        outside the graph (a data file's bytes); ``None`` means "cannot tell: run it".
    still_valid : callable, optional
        ``still_valid(outputs, context) -> bool``: whether stored outputs of a stage with
        side effects still hold (the registered version still exists, say).
    persist : bool
        ``False``: only the manifest (key and output digests) is stored, never the
        values — for outputs that must not reach the disk (rows before PII redaction).
        A later stage that needs them makes the stage run again, and the values must
        have the digests the manifest holds.
    """

    name: str
    func: Callable[[dict[str, Any], Any], dict[str, Any]]
    inputs: tuple[str, ...] = ()
    outputs: Mapping[str, type | tuple[type, ...]] = field(default_factory=dict)
    reads: tuple[str, ...] = ()
    code: tuple[str, ...] = ()
    version: str = "1"
    cache: bool = True
    fingerprint: Callable[[Any], str | None] | None = None
    still_valid: Callable[[dict[str, Any], Any], bool] | None = None
    persist: bool = True


class Graph:
    """Stages in a valid order; the wiring is checked here, when the graph is defined."""

    def __init__(self, stages: Sequence[Stage], sources: Iterable[str] = ()) -> None:
        self.sources = tuple(sources)
        made: dict[str, str] = {name: "(source)" for name in self.sources}
        names: set[str] = set()
        for stage in stages:
            if stage.name in names:
                raise StageContractError(f"stage {stage.name!r} is defined twice")
            names.add(stage.name)
            for needed in stage.inputs:
                if needed not in made:
                    raise StageContractError(
                        f"stage {stage.name!r} needs {needed!r}, which no earlier stage makes"
                        + did_you_mean(needed, made)
                    )
            for output in stage.outputs:
                if output in made:
                    raise StageContractError(
                        f"stage {stage.name!r} makes {output!r}, already made by {made[output]!r}"
                    )
                made[output] = stage.name
        self.stages = tuple(stages)
        self.producer = made

    @property
    def names(self) -> list[str]:
        """Stage names in run order."""
        return [s.name for s in self.stages]

    def check_name(self, name: str, key: str = "--from") -> str:
        """``name`` if it is a stage of this graph, else a one-line error (exit 2)."""
        if name not in self.names:
            raise ConfigError(
                f"{key} {name!r}: not a stage; stages are {', '.join(self.names)}"
                + did_you_mean(name, self.names)
            )
        return name

    def until(self, last: str) -> Graph:
        """The stages up to and including ``last``."""
        index = self.names.index(self.check_name(last, "stop_after"))
        return Graph(self.stages[: index + 1], self.sources)


@dataclass
class StageRecord:
    """What happened to one stage in one run: ``stages.json`` holds a list of these."""

    name: str
    status: str  # "ran" | "reused"
    seconds: float
    key: str
    inputs: dict[str, str]  # input name → digest
    outputs: dict[str, str]  # output name → digest
    attempts: int = 1
    # CPU seconds and peak memory of this run's call (loading, for a reused stage);
    # ``ran_with`` is what a reused stage cost when it ran (from its manifest)
    resources: dict[str, Any] = field(default_factory=dict)
    ran_with: dict[str, Any] | None = None

    def summary(self) -> dict[str, Any]:
        """The short form ``keel run --json`` prints."""
        return {
            "name": self.name,
            "status": self.status,
            "seconds": self.seconds,
            "key": self.key,
            "cpu_seconds": self.resources.get("cpu_seconds"),
            "peak_mb": self.resources.get("peak_mb"),
        }


class Hooks:
    """What the runner tells its observers (progress, tracking, alerts).

    Every method does nothing here: a hook overrides what it needs.
    """

    def before_stage(self, stage: Stage, key: str) -> None:
        """A stage is about to run or be reused."""

    def stage_runs(self, stage: Stage, key: str) -> None:
        """A stage was not reused: it is about to run (a no-op run never calls this)."""

    def after_stage(self, stage: Stage, record: StageRecord) -> None:
        """A stage ran or was reused."""

    def on_stage_error(self, stage: Stage, error: BaseException) -> None:
        """A stage failed for good (after its retries)."""

    def after_run(self, state: RunState) -> None:
        """Every stage ran or was reused."""


class StageStore:
    """Stage outputs under ``root/<key>/``: ``manifest.json`` and one pickle per output.

    Only Keel writes these files (the project's own ``.keel/`` folder), and each file's
    SHA-256 is in the manifest and checked before it is unpickled: a truncated or edited
    file is treated as absent (the stage runs again), never loaded.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def manifest(self, key: str) -> dict[str, Any] | None:
        """The manifest of ``key``, or ``None`` when absent or unreadable."""
        try:
            manifest = json.loads((self.root / key / MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        if manifest.get("format") != STORE_FORMAT or manifest.get("key") != key:
            return None
        return manifest

    def load(self, key: str, name: str, digest: str) -> Any:
        """Output ``name`` of ``key``, checked against ``digest``."""
        data = (self.root / key / f"{name}.pkl").read_bytes()
        if hashlib.sha256(data).hexdigest() != digest:
            raise OSError(f"stage output {key}/{name} does not match its manifest")
        return pickle.loads(data)  # noqa: S301 - Keel's own files, digest-checked above

    def keep_recent(self, keys: Iterable[str], runs: int = KEEP_RUNS, grace: float = GRACE) -> int:
        """Remember ``keys`` as the latest run's; remove entries no recent run used.

        Entries of the last ``runs`` successful runs stay (so going back to a recent
        config is still a reuse); anything else older than ``grace`` seconds goes (a run
        in progress in another process has written its entries just now). Returns how
        many entries were removed.
        """
        index = self.root / RUNS_INDEX
        try:
            recent = json.loads(index.read_text())
            recent = [list(r) for r in recent if isinstance(r, list)]
        except (OSError, ValueError):
            recent = []
        recent = ([*recent, sorted(set(keys))])[-runs:]
        self.root.mkdir(parents=True, exist_ok=True)
        temporary = index.with_name(f".{RUNS_INDEX}.{os.getpid()}")
        temporary.write_text(json.dumps(recent))
        os.replace(temporary, index)
        wanted = {k for run in recent for k in run}
        removed = 0
        now = time.time()
        for entry in self.root.iterdir():
            if not entry.is_dir() or entry.name in wanted:
                continue
            try:
                old = now - entry.stat().st_mtime > grace
            except OSError:
                continue
            if old:
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
        return removed

    def discard(self, keys: Iterable[str]) -> None:
        """Remove ``keys`` (and the store's folder when that leaves it empty)."""
        for key in keys:
            shutil.rmtree(self.root / key, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.root.rmdir()  # only when empty

    def save(self, key: str, manifest: dict[str, Any], blobs: dict[str, bytes]) -> None:
        """Write ``key`` atomically: a temporary folder renamed into place."""
        self.root.mkdir(parents=True, exist_ok=True)
        temporary = self.root / f".tmp-{key}-{os.getpid()}-{time.monotonic_ns()}"
        temporary.mkdir()
        try:
            for name, data in blobs.items():
                (temporary / f"{name}.pkl").write_bytes(data)
            (temporary / MANIFEST).write_text(json.dumps(manifest, indent=1, default=str))
            target = self.root / key
            if target.exists():  # stale or corrupt (a valid one would have been reused)
                shutil.rmtree(target, ignore_errors=True)
            os.replace(temporary, target)
        finally:
            shutil.rmtree(temporary, ignore_errors=True)


class _Values(Mapping[str, Any]):
    """The run's values by name; outputs of reused stages load on first access."""

    def __init__(self, store: StageStore | None) -> None:
        self.store = store
        self.loaded: dict[str, Any] = {}
        self.stored: dict[str, tuple[str, str]] = {}  # name → (key, digest)
        # outputs of reused stages that are not persisted: how to make them again
        self.remake: dict[str, Callable[[], dict[str, Any]]] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self.loaded:
            if name in self.remake:
                key, digest = self.stored[name]
                made = self.remake.pop(name)()
                if hashlib.sha256(pickle.dumps(made[name], protocol=5)).hexdigest() != digest:
                    raise StageContractError(
                        f"{name!r} changed while the run was using it (its digest differs from"
                        f" the one stored under {key}); run again"
                    )
                self.loaded[name] = made[name]
                return made[name]
            if name not in self.stored or self.store is None:
                raise KeyError(name)
            key, digest = self.stored[name]
            self.loaded[name] = self.store.load(key, name, digest)
        return self.loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter({**self.stored, **self.loaded})

    def __len__(self) -> int:
        return len({**self.stored, **self.loaded})


@dataclass
class RunState:
    """What a run of a graph produced: values by name, and one record per stage."""

    values: Mapping[str, Any]
    records: list[StageRecord]

    @property
    def ran(self) -> list[str]:
        """Names of the stages that ran (not reused)."""
        return [r.name for r in self.records if r.status == RAN]


@dataclass
class Runner:
    """Runs a :class:`Graph` with a stage store, retries and hooks."""

    store: StageStore | None
    hooks: Sequence[Hooks] = ()
    retries: int = 3
    backoff: float = 0.5

    def run(
        self,
        graph: Graph,
        config: Any,
        context: Any,
        sources: Mapping[str, Any] | None = None,
        start_from: str | None = None,
    ) -> RunState:
        """Run every stage of ``graph`` in order; reuse what is stored.

        ``start_from`` re-runs that stage and every later one, whatever is stored.
        """
        forced = graph.names.index(graph.check_name(start_from)) if start_from else len(graph.names)
        dumped = _dumped(config)  # once per run: each stage reads its slice of it
        values = _Values(self.store)
        digests: dict[str, str] = {}
        for name, value in (sources or {}).items():
            values.loaded[name] = value
            digests[name] = digest_of(value)
        records: list[StageRecord] = []
        try:
            for index, stage in enumerate(graph.stages):
                inputs = {n: digests[n] for n in stage.inputs}
                reads = config_slice(dumped, stage.reads)
                key = stage_key(stage, reads, context, inputs)
                if hasattr(context, "begin"):
                    context.begin(stage.name, key)
                for hook in self.hooks:
                    hook.before_stage(stage, key)
                started = time.perf_counter()
                record = None
                if index < forced and stage.cache:
                    with measure() as usage:
                        record = self._reuse(stage, key, inputs, values, context)
                    if record is not None:
                        record.resources = usage.to_dict()
                if record is None:
                    for hook in self.hooks:
                        hook.stage_runs(stage, key)
                    record = self._run(stage, key, inputs, reads, values, context, graph.producer)
                record.seconds = round(time.perf_counter() - started, 3)
                if hasattr(context, "usage"):
                    context.usage[stage.name] = record
                digests.update(record.outputs)
                records.append(record)
                for hook in self.hooks:
                    hook.after_stage(stage, record)
        except KeelInputError:
            # bad input writes nothing: what this run stored goes (a crash keeps it, to resume)
            if self.store is not None:
                self.store.discard([r.key for r in records if r.status == RAN])
            raise
        state = RunState(values=values, records=records)
        if self.store is not None:
            self.store.keep_recent(r.key for r in records)
        for hook in self.hooks:
            hook.after_run(state)
        return state

    def _reuse(
        self, stage: Stage, key: str, inputs: dict[str, str], values: _Values, context: Any
    ) -> StageRecord | None:
        manifest = self.store.manifest(key) if self.store is not None else None
        if manifest is None:
            return None
        outputs = manifest.get("outputs", {})
        if set(outputs) != set(stage.outputs):
            return None
        for name, digest in outputs.items():
            values.stored[name] = (key, digest)
            values.loaded.pop(name, None)
            if not stage.persist:
                values.remake[name] = lambda stage=stage: stage.func(
                    {n: values[n] for n in stage.inputs}, context
                )
        if stage.still_valid is not None:
            try:
                held = {name: values[name] for name in stage.outputs}
            except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
                return None
            if not stage.still_valid(held, context):
                return None
        ran_with = manifest.get("resources")
        return StageRecord(
            stage.name, REUSED, 0.0, key, inputs, dict(outputs), ran_with=ran_with or None
        )

    def _run(
        self,
        stage: Stage,
        key: str,
        inputs: dict[str, str],
        reads: dict[str, Any],
        values: _Values,
        context: Any,
        producers: Mapping[str, str],
    ) -> StageRecord:
        given = {}
        for name in stage.inputs:
            try:
                given[name] = values[name]
            except (OSError, pickle.UnpicklingError, EOFError) as exc:
                # a stored output went missing or bad since its stage was reused
                producer = producers.get(name, "?")
                raise StageContractError(
                    f"stage {stage.name!r}: a stored input is unreadable ({name!r} of stage"
                    f" {producer!r}: {exc}); run again with --from {producer}"
                ) from exc
        attempts = 0
        with measure() as usage:
            while True:
                attempts += 1
                try:
                    made = stage.func(given, context)
                    break
                except Exception as exc:
                    if attempts <= self.retries and is_transient(exc):
                        time.sleep(self.backoff * 2 ** (attempts - 1))
                        continue
                    mark_stage(exc, stage.name)
                    for hook in self.hooks:
                        hook.on_stage_error(stage, exc)
                    raise
        _check_outputs(stage, made)
        blobs = {name: pickle.dumps(made[name], protocol=5) for name in stage.outputs}
        outputs = {name: hashlib.sha256(blob).hexdigest() for name, blob in blobs.items()}
        for name in stage.outputs:
            values.loaded[name] = made[name]
            values.stored.pop(name, None)
        if self.store is not None and stage.cache:
            manifest = {
                "format": STORE_FORMAT,
                "key": key,
                "stage": stage.name,
                "keel_version": __version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "inputs": inputs,
                "outputs": outputs,
                "config": reads,
                "resources": usage.to_dict(),
            }
            self.store.save(key, manifest, blobs if stage.persist else {})
        return StageRecord(
            stage.name, RAN, 0.0, key, inputs, outputs, attempts, resources=usage.to_dict()
        )


def lazy_type(module: str, name: str) -> type:
    """A stand-in for ``module.name`` in ``Stage.outputs`` that imports it on first check.

    ``isinstance(x, lazy_type("pandas", "DataFrame"))`` is ``isinstance(x,
    pandas.DataFrame)``, but declaring a graph does not import pandas: a run whose stages
    are all reused never does.
    """

    class Lazy(type):
        def __instancecheck__(cls, value: Any) -> bool:
            return isinstance(value, getattr(importlib.import_module(module), name))

        def __repr__(cls) -> str:
            return f"<class '{module}.{name}'>"

    return Lazy(name, (), {"__module__": module})


def _check_outputs(stage: Stage, made: Any) -> None:
    if not isinstance(made, dict) or set(made) != set(stage.outputs):
        got = sorted(made) if isinstance(made, dict) else type(made).__name__
        raise StageContractError(
            f"stage {stage.name!r} must return {sorted(stage.outputs)}, returned {got}"
        )
    for name, kind in stage.outputs.items():
        if not isinstance(made[name], kind):
            raise StageContractError(
                f"stage {stage.name!r}: output {name!r} must be {kind}, got"
                f" {type(made[name]).__name__}"
            )


def mark_stage(error: BaseException, name: str) -> None:
    """Name the stage on an error (``stage_of`` reads it; the first stage to mark wins)."""
    if getattr(error, "keel_stage", None) is None:
        with contextlib.suppress(AttributeError, TypeError):
            error.keel_stage = name  # type: ignore[attr-defined]


def stage_of(error: BaseException) -> str | None:
    """The stage an error was raised in, if a runner marked it."""
    return getattr(error, "keel_stage", None)


def is_transient(error: BaseException) -> bool:
    """Whether retrying may help: a locked SQLite store, a refused or timed-out connection.

    The whole chain of causes is looked at (MLflow and SQLAlchemy wrap these).
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current).lower()
        if isinstance(current, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
            return True
        if isinstance(current, ConnectionError | TimeoutError):
            return True
        if type(current).__name__ in ("ConnectionError", "ConnectTimeout", "ReadTimeout") or (
            type(current).__name__ == "OperationalError" and "database is locked" in text
        ):
            return True
        if "temporarily_unavailable" in text or "max retries exceeded" in text:
            return True
        current = current.__cause__ or current.__context__
    return False


def stage_key(
    stage: Stage, reads: Mapping[str, Any], context: Any, inputs: Mapping[str, str]
) -> str:
    """24 hex digits: stage name, code version, config keys read (``reads``), input digests."""
    fingerprint = stage.fingerprint(context) if stage.fingerprint else ""
    if fingerprint is None:  # cannot tell what it reads: a fresh key, so it runs
        fingerprint = f"unknown-{time.time_ns()}"
    document = {
        "stage": stage.name,
        "version": stage.version,
        "keel": __version__,
        "code": code_version(stage),
        "config": dict(reads),
        "inputs": dict(sorted(inputs.items())),
        "fingerprint": fingerprint,
    }
    text = json.dumps(document, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _dumped(config: Any) -> dict[str, Any]:
    """A pydantic config (or a mapping) as JSON-ready data."""
    return config.model_dump(mode="json") if hasattr(config, "model_dump") else dict(config)


def config_slice(dumped: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    """The values of the dotted ``keys`` of a dumped config."""
    found: dict[str, Any] = {}
    for key in keys:
        value: Any = dumped
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        found[key] = value
    return found


def code_version(stage: Stage) -> str:
    """Digest of the stage function's source and of the packages it names."""
    parts = [_source_digest_of(stage.func)]
    parts += [package_digest(name) for name in stage.code]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _source_digest_of(func: Callable[..., Any]) -> str:
    try:
        text = inspect.getsource(func)
    except (OSError, TypeError):
        text = getattr(func, "__qualname__", repr(func))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@cache
def package_digest(name: str) -> str:
    """Digest of every ``.py`` file of a package (or of one module), found without importing it.

    (Importing ``keel.families.tabular.responsible`` to find its files would load SHAP:
    an identical re-run would pay seconds for a digest.)
    """
    spec = find_spec(name)
    if spec is None:
        raise StageContractError(f"a stage names code {name!r}, which is not importable")
    if spec.submodule_search_locations:
        files = sorted(
            p for root in spec.submodule_search_locations for p in Path(root).rglob("*.py")
        )
    else:
        files = [Path(spec.origin or "")]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def digest_of(value: Any) -> str:
    """SHA-256 of a value's pickle (the digest of a graph source)."""
    return hashlib.sha256(pickle.dumps(value, protocol=5)).hexdigest()


def records_document(records: Sequence[StageRecord]) -> list[dict[str, Any]]:
    """``stages.json``: every stage with status, seconds, key and its lineage."""
    return [asdict(r) for r in records]


__all__ = [
    "RAN",
    "REUSED",
    "Graph",
    "Hooks",
    "RunState",
    "Runner",
    "Stage",
    "StageContractError",
    "StageRecord",
    "StageStore",
    "config_slice",
    "digest_of",
    "is_transient",
    "mark_stage",
    "records_document",
    "stage_key",
    "stage_of",
]
