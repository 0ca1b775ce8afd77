"""``FAMILIES``: the built-in families, listed explicitly, and those of installed packages.

Built-ins and plug-ins take the same path: an import string ``module:attribute`` naming
a :class:`~keel.families.Family` object, imported on first use. A package adds a family
by declaring an entry point in the group ``keel.families``::

    [project.entry-points."keel.families"]
    forecast = "keel_forecast:FAMILY"

A plug-in that fails to import is reported with a warning (and left out); the built-ins
never are. Every run, version and package records ``keel.family`` and ``keel.task``;
loading resolves the family from that record (:meth:`Families.of_metadata`).
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Iterator, Mapping
from importlib.metadata import entry_points
from typing import Any

from keel.errors import ConfigError, KeelWarning, did_you_mean
from keel.families._protocol import Family

ENTRY_POINT_GROUP = "keel.families"
BUILT_IN: dict[str, str] = {
    "tabular": "keel.families.tabular:FAMILY",
    "recommendation": "keel.families.recommendation:FAMILY",
    "retrieval": "keel.families.retrieval:FAMILY",
}
"""The built-in families by name: ``module:attribute`` of their :class:`Family` object."""


def _load(target: str) -> Family:
    module, _, attribute = target.partition(":")
    family = getattr(importlib.import_module(module), attribute or "FAMILY")
    if not isinstance(family, Family):
        raise TypeError(f"{target} is not a keel.families.Family (got {type(family).__name__})")
    return family


class Families(Mapping[str, Family]):
    """Every family Keel knows: name → :class:`Family`, loaded on first use."""

    def __init__(self, built_in: Mapping[str, str], group: str = ENTRY_POINT_GROUP) -> None:
        self._targets = dict(built_in)
        self._group = group
        self._loaded: dict[str, Family] = {}
        self._scanned = False

    def _scan(self) -> None:
        """Add the families of installed packages (entry-point group ``keel.families``)."""
        if self._scanned:
            return
        self._scanned = True
        for point in entry_points(group=self._group):
            if point.name in self._targets:
                warnings.warn(
                    f"the keel.families entry point {point.name!r} ({point.value}) is ignored:"
                    " a family of that name is already known",
                    KeelWarning,
                    stacklevel=3,
                )
                continue
            self._targets[point.name] = point.value

    def register(self, name: str, target: str | Family) -> None:
        """Add a family by import string or object (tests, notebooks)."""
        self._scan()
        if name in self._targets:
            raise ValueError(f"family {name!r} is registered twice")
        self._targets[name] = target if isinstance(target, str) else f"<object {name}>"
        if isinstance(target, Family):
            self._loaded[name] = target

    def __getitem__(self, name: str) -> Family:
        self._scan()
        if name in self._loaded:
            return self._loaded[name]
        try:
            target = self._targets[name]
        except KeyError:
            raise KeyError(name) from None
        try:
            family = _load(target)
        except Exception as exc:
            if name in BUILT_IN:
                raise
            raise ConfigError(
                f"the model family {name!r} ({target}) could not be loaded:"
                f" {type(exc).__name__}: {exc}; reinstall the package that provides it"
            ) from exc
        if family.name != name:
            raise ConfigError(f"{target} names itself {family.name!r}, registered as {name!r}")
        self._loaded[name] = family
        return family

    def __iter__(self) -> Iterator[str]:
        self._scan()
        return iter(list(self._targets))

    def __len__(self) -> int:
        self._scan()
        return len(self._targets)

    def get_family(self, name: str) -> Family:
        """The family ``name``; an unknown name is a ``ConfigError`` listing the known ones."""
        try:
            return self[name]
        except KeyError:
            raise ConfigError(
                f"{name!r} is not a model family Keel knows; it knows {', '.join(self)}"
                f"{did_you_mean(str(name), list(self))} (a family from another package is"
                f" found through the entry-point group {self._group!r})"
            ) from None

    def usable(self) -> Iterator[Family]:
        """Every family that loads; a plug-in that does not is reported with a warning."""
        for name in list(self):
            try:
                yield self[name]
            except ConfigError as exc:
                warnings.warn(str(exc), KeelWarning, stacklevel=2)

    def for_task(self, task: str | None) -> Family:
        """The family that runs ``task:`` (the default family when keel.yaml names none)."""
        for family in self.usable():
            if (task is None and family.default) or task in family.tasks:
                return family
        known = [t for f in self.usable() for t in f.tasks]
        raise ConfigError(
            f"keel.yaml: key 'task': {task!r} is not a task Keel knows; it knows"
            f" {', '.join(known)}{did_you_mean(str(task), known)}"
        )

    def of_metadata(self, meta: Mapping[str, Any]) -> Family:
        """The family a run, version or package recorded (``family``, else its ``task``).

        Packages registered before families were recorded name only their task.
        """
        name = meta.get("family")
        if name:
            return self.get_family(str(name))
        return self.for_task(str(meta.get("task")) if meta.get("task") else None)


FAMILIES = Families(BUILT_IN)
"""Every family Keel knows: the built-ins and those of installed packages."""
