"""Packages whose public names load on first use (PEP 562).

Outside the layers, like ``keel.errors``: a package's ``__init__`` keeps a table of
where each public name lives and gets its module ``__getattr__`` from here, so that
importing one light name does not import the package's heavy modules.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(
    package: str, where: Mapping[str, tuple[str, str | None]], namespace: dict[str, Any]
) -> Callable[[str], Any]:
    """A module ``__getattr__`` importing ``name`` from ``where[name]`` on first use.

    ``where[name]`` is ``(module, attribute)``, or ``(module, None)`` for the module
    itself. The value is stored in ``namespace`` (the package's globals), so the import
    happens once.
    """

    def load(name: str) -> Any:
        try:
            module, attribute = where[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        loaded = importlib.import_module(module)
        value = loaded if attribute is None else getattr(loaded, attribute)
        namespace[name] = value
        return value

    return load
