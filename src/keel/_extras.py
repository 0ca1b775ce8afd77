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


def missing(extra: str, *modules: str, subject: str = "this") -> str | None:
    """``"<subject> needs the [extra] extra (... not installed): pip install ..."``.

    ``None`` when every one of ``modules`` can be found (nothing is imported).
    """
    import importlib.util

    gone = [m for m in modules if importlib.util.find_spec(m) is None]
    if not gone:
        return None
    return (
        f"{subject} needs the [{extra}] extra ({', '.join(gone)} not installed):"
        f" {install_line(extra)}"
    )


def require(extra: str, *modules: str) -> None:
    """Raise ``KeelInputError`` (exit 2, HTTP 409 on the server) when ``extra`` is missing."""
    why = missing(extra, *modules)
    if why is not None:
        from keel.errors import KeelInputError

        raise KeelInputError(why)


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
