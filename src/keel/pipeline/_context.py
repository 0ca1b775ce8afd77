"""What every family's stages share: the run context and a few data helpers.

:class:`RunContext` is what a stage may use besides its inputs (config, settings,
progress, the stage's key, the MLflow run it opened); the helpers append rows, rewrite
personal data and hash files the same way for every family.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from keel.config import ProjectConfig, Settings

# what the run logs and registers: every key but the card (documentation, its own stage),
# the release-side keys read by other commands, and where tuning runs (the same result)
RECORDED_KEYS = tuple(
    k
    for k in ProjectConfig.model_fields
    if k
    not in (
        "card",
        "gates",
        "serving",
        "tuning",
        "features",
        "privacy",
        "release",
        "family_section",
    )
)


@dataclass
class RunContext:
    """What every stage may use besides its inputs: the config, settings and progress."""

    config: ProjectConfig
    settings: Settings
    observer: Callable[[str, str], None] = lambda stage, detail: None
    extra_label: str = "extra rows"
    stage: str = ""
    key: str = ""
    run_id: str | None = None  # the MLflow run register opened (a later failure marks it)
    usage: dict[str, Any] = field(default_factory=dict)  # stage → its StageRecord so far
    started: float = field(default_factory=time.perf_counter)  # the run's start (budget:)
    family: str = ""  # the family running (keel.family on the run, version and package)

    def begin(self, stage: str, key: str) -> None:
        """The runner enters ``stage`` (its cache key ``key``)."""
        self.stage, self.key = stage, key

    def say(self, detail: str) -> None:
        """Progress detail for the current stage."""
        self.observer(self.stage, detail)

    def resources(self) -> list[dict[str, Any]]:
        """Wall time, CPU seconds and peak memory of the stages finished so far.

        A reused stage cost little now; what it cost when it ran comes from its
        manifest (``ran_with``).
        """
        return [
            {
                "stage": r.name,
                "status": r.status,
                "seconds": r.seconds,
                **r.resources,
                **({"ran_with": r.ran_with} if r.ran_with else {}),
            }
            for r in self.usage.values()
        ]


def file_digest(path: Any) -> str | None:
    """SHA-256 of a file's bytes (``None`` when there is no such file)."""
    if path is None or not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def protect_dataset(dataset: Any, pii: Any, present_only: bool = False) -> tuple[Any, Any]:
    """``dataset`` with its personal data rewritten as ``pii:`` says, and the report.

    From here on only the protected rows exist: they are what is snapshotted, profiled,
    logged and learned from. The raw digest stays in the lineage. ``present_only``: the
    configured columns this table lacks are left to another table (a column in none is
    the caller's error).
    """
    from keel.data import Dataset, content_digest, protect

    columns = dict(pii.columns)
    if present_only:
        columns = {c: a for c, a in columns.items() if c in dataset.frame.columns}
    protected, report = protect(dataset.frame, columns, scan=pii.scan, threshold=pii.threshold)
    if protected is not dataset.frame:
        dataset = Dataset(
            frame=protected,
            source=dataset.source,
            digest=content_digest(protected),
            lineage={**dataset.lineage, "raw_digest": dataset.digest},
        )
    return dataset, report


def with_rows(dataset: Any, rows: pd.DataFrame, label: str) -> Any:
    """``dataset`` with ``rows`` appended (missing columns empty); its own digest."""
    from keel.data import Dataset, content_digest

    frame = pd.concat(
        [dataset.frame, rows.reindex(columns=dataset.frame.columns)], ignore_index=True
    )
    return Dataset(
        frame=frame,
        source=f"{dataset.source} + {label}",
        digest=content_digest(frame),
        lineage={**dataset.lineage, "appended": {"rows": len(rows), "from": label}},
    )


def now() -> str:
    """The card's creation time."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
