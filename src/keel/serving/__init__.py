"""Serving: the FastAPI app over a model package loaded from the registry."""

from keel.serving._app import (
    FOLLOW_ENV,
    MAX_BODY_BYTES,
    MAX_INSTANCES,
    MODEL_URI_ENV,
    POLL_ENV,
    POLL_SECONDS,
    TRACKING_URI_ENV,
    AliasWatcher,
    PredictRequest,
    Served,
    create_app,
    create_app_from_env,
)

__all__ = [
    "FOLLOW_ENV",
    "MAX_BODY_BYTES",
    "MAX_INSTANCES",
    "MODEL_URI_ENV",
    "POLL_ENV",
    "POLL_SECONDS",
    "TRACKING_URI_ENV",
    "AliasWatcher",
    "PredictRequest",
    "Served",
    "create_app",
    "create_app_from_env",
]
