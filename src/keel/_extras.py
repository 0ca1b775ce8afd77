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


def requirement(extra: str | None = None, exact: bool = True) -> str:
    """Keel's own release as a requirement: ``keel-ml[extra]==X.Y.Z`` (or ``~=X.Y``).

    ``exact`` pins the release that wrote a file (a Dockerfile serves the model with the
    Keel that built its files); otherwise any compatible release of the same series.
    """
    from keel._version import __version__

    name = f"{DISTRIBUTION}[{extra}]" if extra else DISTRIBUTION
    if exact:
        return f"{name}=={__version__}"
    return f"{name}~={'.'.join(__version__.split('.')[:2])}"
