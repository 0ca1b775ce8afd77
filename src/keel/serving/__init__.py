"""Serving: the FastAPI app over a model package loaded from the registry."""

from keel.serving._app import (
    MAX_BODY_BYTES,
    MAX_INSTANCES,
    MODEL_URI_ENV,
    TRACKING_URI_ENV,
    PredictRequest,
    create_app,
    create_app_from_env,
)

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_INSTANCES",
    "MODEL_URI_ENV",
    "TRACKING_URI_ENV",
    "PredictRequest",
    "create_app",
    "create_app_from_env",
]
