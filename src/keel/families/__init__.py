"""Model families: one folder per kind of model, behind one :class:`Family` protocol.

``keel.families.tabular`` (binary, multiclass, regression), ``.recommendation`` and
``.retrieval`` each hold everything that differs for that kind of model; generic code
reaches them only through :data:`FAMILIES` (which also loads the entry-point group
``keel.families``) and asks their :class:`Capabilities`, never their names. This
module is light: it imports no family.
"""

from keel.families._protocol import Capabilities, Family
from keel.families._registry import (
    BUILT_IN,
    ENTRY_POINT_GROUP,
    FAMILIES,
    Families,
)

__all__ = [
    "BUILT_IN",
    "ENTRY_POINT_GROUP",
    "FAMILIES",
    "Capabilities",
    "Families",
    "Family",
]
