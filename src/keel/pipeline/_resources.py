"""What a stage cost: CPU seconds and peak memory, measured around its call.

CPU is the process's own time (every thread) plus that of the child processes it
waited for. Peak memory is the resident set's high-water mark: on Linux the kernel's
``VmHWM`` is reset before each stage (``/proc/self/clear_refs``), so the peak is the
stage's own; where that is not possible the lifetime peak of the process is reported
and marked ``peak_scope: process``.
"""

from __future__ import annotations

import os
import re
import resource
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR = Path("/proc/self/clear_refs")
_HWM = re.compile(rb"VmHWM:\s+(\d+)\s+kB")


@dataclass
class Usage:
    """CPU seconds and peak resident memory (MB) of one stage."""

    cpu_seconds: float = 0.0
    peak_mb: float | None = None
    peak_scope: str = "stage"

    def to_dict(self) -> dict[str, float | str | None]:
        """The JSON form kept in manifests, ``stages.json`` and the report."""
        return {
            "cpu_seconds": round(self.cpu_seconds, 3),
            "peak_mb": None if self.peak_mb is None else round(self.peak_mb, 1),
            "peak_scope": self.peak_scope,
        }


def _cpu() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def _reset_peak() -> bool:
    try:
        _CLEAR.write_text("5")
    except OSError:
        return False
    return True


def _peak_kb() -> float | None:
    try:
        found = _HWM.search(_STATUS.read_bytes())
    except OSError:
        found = None
    if found:
        return float(found.group(1))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform == "darwin" else float(peak)  # bytes on macOS


@contextmanager
def measure() -> Iterator[Usage]:
    """Measure the block: the :class:`Usage` is filled in when it ends."""
    usage = Usage(peak_scope="stage" if _reset_peak() else "process")
    started = _cpu()
    try:
        yield usage
    finally:
        usage.cpu_seconds = max(0.0, _cpu() - started)
        peak = _peak_kb()
        usage.peak_mb = None if peak is None else peak / 1024


__all__ = ["Usage", "measure"]
