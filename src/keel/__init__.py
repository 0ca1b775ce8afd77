"""Keel: carry a tabular model through its whole life, with the evidence to prove it."""

from keel._version import __version__

__all__ = ["__version__"]
