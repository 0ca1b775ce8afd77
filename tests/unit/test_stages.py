"""The stage runner on small fake stages: wiring, keys, reuse, retries, the store."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from keel.errors import ConfigError, DataError
from keel.families.tabular.stages import LIFECYCLE, STAGES
from keel.pipeline import (
    Graph,
    Runner,
    Stage,
    StageContractError,
    StageStore,
    is_transient,
    stage_of,
)
from keel.pipeline._stages import Hooks


class Config:
    """A config with ``model_dump``, like ProjectConfig."""

    def __init__(self, **values: Any) -> None:
        self.values = values

    def model_dump(self, mode: str = "json") -> dict[str, Any]:
        return dict(self.values)


class Context:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.stage = ""

    def begin(self, stage: str, key: str) -> None:
        self.stage = stage


def double(inputs: dict, ctx: Context) -> dict:
    ctx.calls.append("double")
    return {"doubled": [2 * x for x in inputs["numbers"]]}


def total(inputs: dict, ctx: Context) -> dict:
    ctx.calls.append("total")
    return {"total": sum(inputs["doubled"])}


def graph(**changes: Any) -> Graph:
    return Graph(
        [
            Stage("double", double, inputs=("numbers",), outputs={"doubled": list}, reads=("a",)),
            Stage("total", total, inputs=("doubled",), outputs={"total": int}, reads=("b",)),
            *changes.get("extra", []),
        ],
        sources=("numbers",),
    )


def run(tmp_path: Path, config: Config, numbers: list[int], **options: Any) -> tuple:
    ctx = Context()
    runner = Runner(StageStore(tmp_path / "stages"), backoff=0.0)
    state = runner.run(graph(), config, ctx, sources={"numbers": numbers}, **options)
    return state, ctx


def test_second_run_reuses_every_stage_and_loads_only_what_it_returns(tmp_path: Path) -> None:
    first, ctx = run(tmp_path, Config(a=1, b=1), [1, 2, 3])
    assert ctx.calls == ["double", "total"] and first.values["total"] == 12
    again, ctx = run(tmp_path, Config(a=1, b=1), [1, 2, 3])
    assert ctx.calls == [] and [r.status for r in again.records] == ["reused", "reused"]
    assert again.values["total"] == 12
    assert [r.key for r in again.records] == [r.key for r in first.records]
    # lineage: an input digest of a stage is the output digest of its producer
    assert again.records[1].inputs["doubled"] == again.records[0].outputs["doubled"]


def test_key_follows_config_keys_read_and_inputs(tmp_path: Path) -> None:
    run(tmp_path, Config(a=1, b=1, other=1), [1, 2, 3])
    _, ctx = run(tmp_path, Config(a=1, b=1, other=2), [1, 2, 3])
    assert ctx.calls == []  # a key no stage reads
    _, ctx = run(tmp_path, Config(a=1, b=2, other=2), [1, 2, 3])
    assert ctx.calls == ["total"]  # only the stage that reads b
    _, ctx = run(tmp_path, Config(a=1, b=2), [1, 2, 4])
    assert ctx.calls == ["double", "total"]  # a source changed


def test_start_from_reruns_that_stage_and_later_ones(tmp_path: Path) -> None:
    run(tmp_path, Config(a=1, b=1), [1])
    state, ctx = run(tmp_path, Config(a=1, b=1), [1], start_from="total")
    assert ctx.calls == ["total"] and [r.status for r in state.records] == ["reused", "ran"]
    with pytest.raises(ConfigError, match=r"--from 'totl': not a stage.*did you mean 'total'"):
        run(tmp_path, Config(a=1, b=1), [1], start_from="totl")


def test_a_damaged_manifest_means_the_stage_runs_again(tmp_path: Path) -> None:
    first, _ = run(tmp_path, Config(a=1, b=1), [5])
    (tmp_path / "stages" / first.records[1].key / "manifest.json").write_text("{")
    again, ctx = run(tmp_path, Config(a=1, b=1), [5])
    assert ctx.calls == ["total"] and again.values["total"] == 10


def test_unreadable_input_of_a_stage_that_runs_is_a_clear_error(tmp_path: Path) -> None:
    first, _ = run(tmp_path, Config(a=1, b=1), [5])
    (tmp_path / "stages" / first.records[0].key / "doubled.pkl").write_bytes(b"garbage")
    with pytest.raises(StageContractError, match=r"stored input is unreadable.*--from double"):
        run(tmp_path, Config(a=1, b=2), [5])


def test_wiring_is_checked_when_the_graph_is_defined() -> None:
    with pytest.raises(StageContractError, match=r"needs 'doubld'.*did you mean 'doubled'"):
        Graph(
            [
                Stage("double", double, inputs=("numbers",), outputs={"doubled": list}),
                Stage("total", total, inputs=("doubld",), outputs={"total": int}),
            ],
            sources=("numbers",),
        )
    with pytest.raises(StageContractError, match="already made by 'double'"):
        Graph(
            [
                Stage("double", double, inputs=("numbers",), outputs={"doubled": list}),
                Stage("again", double, inputs=("numbers",), outputs={"doubled": list}),
            ],
            sources=("numbers",),
        )
    with pytest.raises(StageContractError, match="defined twice"):
        Graph([Stage("a", double), Stage("a", total)])


def test_outputs_are_checked_against_the_declaration(tmp_path: Path) -> None:
    wrong = Graph(
        [Stage("double", lambda i, c: {"doubled": "no"}, outputs={"doubled": list})], sources=()
    )
    with pytest.raises(StageContractError, match="output 'doubled' must be"):
        Runner(None).run(wrong, Config(), Context())
    missing = Graph([Stage("double", lambda i, c: {}, outputs={"doubled": list})])
    with pytest.raises(StageContractError, match="must return \\['doubled'\\]"):
        Runner(None).run(missing, Config(), Context())


def test_transient_failures_are_retried_real_ones_named(tmp_path: Path) -> None:
    attempts = []

    def flaky(inputs: dict, ctx: Context) -> dict:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("store") from sqlite3.OperationalError("database is locked")
        return {"x": 1}

    state = Runner(None, backoff=0.0).run(
        Graph([Stage("flaky", flaky, outputs={"x": int})]), Config(), Context()
    )
    assert state.records[0].attempts == 3 and state.values["x"] == 1

    def broken(inputs: dict, ctx: Context) -> dict:
        attempts.append(1)
        raise ValueError("a real bug")

    attempts.clear()
    with pytest.raises(ValueError, match="a real bug") as caught:
        Runner(None, backoff=0.0).run(
            Graph([Stage("broken", broken, outputs={"x": int})]), Config(), Context()
        )
    assert len(attempts) == 1 and stage_of(caught.value) == "broken"


def test_is_transient() -> None:
    assert is_transient(sqlite3.OperationalError("database is locked"))
    assert is_transient(ConnectionRefusedError(111, "refused"))
    assert not is_transient(sqlite3.OperationalError("no such table: runs"))
    assert not is_transient(ValueError("x"))


def test_bad_input_removes_what_the_run_stored_a_crash_keeps_it(tmp_path: Path) -> None:
    def refuse(inputs: dict, ctx: Context) -> dict:
        raise DataError("bad rows")

    def crash(inputs: dict, ctx: Context) -> dict:
        raise RuntimeError("killed")

    for failing, kept in ((refuse, False), (crash, True)):
        store = tmp_path / failing.__name__
        g = graph(extra=[Stage("last", failing, inputs=("total",), outputs={"y": int})])
        with pytest.raises((DataError, RuntimeError)):
            Runner(StageStore(store)).run(g, Config(a=1, b=1), Context(), sources={"numbers": [1]})
        assert store.exists() is kept
        if kept:
            assert len([p for p in store.iterdir() if not p.name.startswith(".")]) == 2


def test_hooks_see_every_stage_and_errors(tmp_path: Path) -> None:
    seen: list[tuple] = []

    class Hook(Hooks):
        def before_stage(self, stage, key):
            seen.append(("before", stage.name))

        def after_stage(self, stage, record):
            seen.append(("after", stage.name, record.status))

        def on_stage_error(self, stage, error):
            seen.append(("error", stage.name, str(error)))

        def after_run(self, state):
            seen.append(("done", len(state.records)))

    Runner(StageStore(tmp_path), hooks=[Hook()]).run(
        graph(), Config(a=1, b=1), Context(), sources={"numbers": [1]}
    )
    assert seen == [
        ("before", "double"),
        ("after", "double", "ran"),
        ("before", "total"),
        ("after", "total", "ran"),
        ("done", 2),
    ]

    def broken(inputs: dict, ctx: Context) -> dict:
        raise ValueError("no")

    seen.clear()
    failing = graph(extra=[Stage("last", broken, inputs=("total",), outputs={"y": int})])
    with pytest.raises(ValueError, match="no"):
        Runner(StageStore(tmp_path), hooks=[Hook()]).run(
            failing, Config(a=1, b=1), Context(), sources={"numbers": [1]}
        )
    assert seen[-2:] == [("before", "last"), ("error", "last", "no")]  # no after_run


def test_stage_runs_is_told_only_for_stages_that_run(tmp_path: Path) -> None:
    ran: list[str] = []

    class Hook(Hooks):
        def stage_runs(self, stage, key):
            ran.append(stage.name)

    def run() -> None:
        Runner(StageStore(tmp_path), hooks=[Hook()]).run(
            graph(), Config(a=1, b=1), Context(), sources={"numbers": [1]}
        )

    run()
    assert ran == ["double", "total"]
    ran.clear()
    run()  # everything stored: a no-op run never hears of a stage that runs
    assert ran == []


def test_the_lifecycle_graph() -> None:
    assert STAGES[0] == "ingest" and STAGES[-1] == "alias"
    assert STAGES.index("alias") > max(STAGES.index(s) for s in ("report", "card", "register"))
    ingest = LIFECYCLE.stages[0]
    assert not ingest.persist  # rows before PII redaction are never stored
    for stage in LIFECYCLE.stages:
        assert stage.func.__doc__, f"stage {stage.name} has no docstring"
        assert stage.outputs, stage.name


def test_every_family_writes_its_stages_out_in_order() -> None:
    """A family lists its stages by hand (`keel families`, the progress bar: no graph import)."""
    from keel.families import FAMILIES

    for family in FAMILIES.values():
        graph, read_only_until = family.lifecycle()
        assert family.stage_names == tuple(graph.names), family.name
        assert read_only_until in family.stage_names
    assert FAMILIES["tabular"].stage_names == STAGES


def test_measure_sees_the_cpu_and_the_peak_memory_of_its_block() -> None:
    from keel.pipeline._resources import measure

    with measure() as usage:
        block = bytearray(150 * 1024 * 1024)
        block[::4096] = b"x" * len(block[::4096])  # touch every page: it is resident
        total = sum(i * i for i in range(300_000))
    del block
    assert total > 0
    assert usage.cpu_seconds > 0.0
    assert usage.peak_mb >= 150
    with measure() as small:
        sum(range(1000))
    if small.peak_scope == "stage":  # Linux: the high-water mark was reset
        assert small.peak_mb < usage.peak_mb - 100
    assert set(small.to_dict()) == {"cpu_seconds", "peak_mb", "peak_scope"}
