"""Features: the preprocessing pipeline built from the schema (it lives inside the model)."""

from keel.families.tabular.features._build import (
    MISSING_CATEGORY,
    build_preprocessor,
    categorical_positions,
)

__all__ = ["MISSING_CATEGORY", "build_preprocessor", "categorical_positions"]
