"""What every family's stages share: the run context and a few data helpers.

:class:`RunContext` is what a stage may use besides its inputs (config, settings,
progress, the stage's key, the MLflow run it opened); the helpers append rows, rewrite
personal data and hash files the same way for every family.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keel.config import ProjectConfig, Settings

if TYPE_CHECKING:  # pandas loads where rows are joined, not for a no-op run
    import pandas as pd

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


DIGEST_BOOK = "file_digests.json"  # in the stage store: path → size, mtime, inode, SHA-256
_BOOK_ENTRIES = 500
_SETTLED_SECONDS = 2.0  # a file changed this recently is hashed every time (racy mtime)


def file_digest(path: Any, book: Path | None = None) -> str | None:
    """SHA-256 of a file's bytes (``None`` when there is no such file).

    With ``book`` (a folder, the stage store), a file whose size, modification time and
    inode are those recorded when it was last hashed is not read again: its recorded
    digest is returned, as DVC and git do. Any difference in the three hashes the file.
    A file modified in the last two seconds is always hashed and not recorded (a second
    write within one tick of the clock would keep its time).
    """
    if path is None or not path.is_file():
        return None
    if book is None:
        return _sha256(path)
    key = str(path.resolve())
    before = path.stat()
    seen = [before.st_size, before.st_mtime_ns, before.st_ino]
    known = _read_book(book / DIGEST_BOOK)
    entry = known.get(key)
    if isinstance(entry, dict) and entry.get("stat") == seen and entry.get("sha256"):
        return str(entry["sha256"])
    digest = _sha256(path)
    after = path.stat()
    settled = time.time() - after.st_mtime > _SETTLED_SECONDS
    if settled and [after.st_size, after.st_mtime_ns, after.st_ino] == seen:
        known.pop(key, None)
        known[key] = {"stat": seen, "sha256": digest}
        kept = dict(list(known.items())[-_BOOK_ENTRIES:])
        try:
            book.mkdir(parents=True, exist_ok=True)
            temporary = book / f".{DIGEST_BOOK}.{os.getpid()}"
            temporary.write_text(json.dumps(kept))
            os.replace(temporary, book / DIGEST_BOOK)
        except OSError:
            pass  # a read-only store only costs the next run one more read of the file
    return digest


def _read_book(path: Path) -> dict[str, Any]:
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _sha256(path: Path) -> str:
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
    import pandas as pd

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
