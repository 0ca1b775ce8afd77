"""The distribution's name and its extras: one place that says what to install.

Keel is published as ``keel-ml`` (the name ``keel`` on the package index belongs to an
unrelated project); the import name and the ``keel`` command stay ``keel``. The core is
the tabular lifecycle with tracking, registry, serving and monitoring; a family or an
integration that needs more names its extra, and a command that needs a missing extra
stops with exit 2 and the exact line to run — never an ImportError traceback.
"""

from __future__ import annotations

DISTRIBUTION = "keel-ml"


def install_line(extra: str) -> str:
    """The command that installs ``extra``: ``pip install "keel-ml[extra]"``."""
    return f'pip install "{DISTRIBUTION}[{extra}]"'
