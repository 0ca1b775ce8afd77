"""The feature pipeline, built from the schema, lives inside every model."""

from __future__ import annotations

from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from keel.data import Schema

MISSING_CATEGORY = "(missing)"
MAX_ONE_HOT = 50


def build_preprocessor(schema: Schema, scale_numeric: bool = False) -> ColumnTransformer:
    """Return an unfitted transformer from the raw feature columns to a numeric matrix.

    Numbers are imputed with the median (and standardised when ``scale_numeric``,
    for linear models); strings and booleans are imputed and one-hot encoded, with
    unseen or rare categories mapped to an "infrequent" bucket instead of failing.

    Only scikit-learn parts are used, so the fitted model loads in any MLflow client
    without Keel installed.
    """
    numeric = [c.name for c in schema.features if c.kind in ("integer", "float")]
    strings = [c.name for c in schema.features if c.kind == "string"]
    booleans = [c.name for c in schema.features if c.kind == "boolean"]
    numeric_steps: list[tuple[str, object]] = [("impute", SimpleImputer(strategy="median"))]
    if scale_numeric:
        numeric_steps.append(("scale", StandardScaler()))
    transformers = []
    if numeric:
        transformers.append(("numeric", Pipeline(numeric_steps), numeric))
    if strings:
        transformers.append(
            (
                "categorical",
                Pipeline(
                    [
                        (
                            "impute",
                            SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY),
                        ),
                        (
                            "encode",
                            OneHotEncoder(
                                handle_unknown="infrequent_if_exist",
                                max_categories=MAX_ONE_HOT,
                                sparse_output=False,
                            ),
                        ),
                    ]
                ),
                strings,
            )
        )
    if booleans:
        # One-hot straight away: missing values become their own category.
        transformers.append(
            (
                "boolean",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                booleans,
            )
        )
    if not transformers:
        raise ValueError("the schema has no feature columns")
    return ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)
