"""Serving: the FastAPI app over a model package loaded from the registry."""

from keel.serving._app import (
    FOLLOW_ENV,
    LOG_URL_ENV,
    MAX_BODY_BYTES,
    MAX_INSTANCES,
    MODEL_URI_ENV,
    MONITORING_ENV,
    POLL_ENV,
    POLL_SECONDS,
    SETTINGS_ENV,
    TRACKING_URI_ENV,
    AliasWatcher,
    PredictRequest,
    Served,
    create_app,
    create_app_from_env,
    side_models,
)
from keel.serving._loadtest import LOADTEST_TAG, LoadResult, record_loadtest, run_loadtest
from keel.serving._log import PredictionLog, log_url, read_log
from keel.serving._observe import API_KEYS_ENV, Metrics, hash_key

__all__ = [
    "API_KEYS_ENV",
    "FOLLOW_ENV",
    "LOADTEST_TAG",
    "LOG_URL_ENV",
    "MAX_BODY_BYTES",
    "MAX_INSTANCES",
    "MODEL_URI_ENV",
    "MONITORING_ENV",
    "POLL_ENV",
    "POLL_SECONDS",
    "SETTINGS_ENV",
    "TRACKING_URI_ENV",
    "AliasWatcher",
    "LoadResult",
    "Metrics",
    "PredictRequest",
    "PredictionLog",
    "Served",
    "create_app",
    "create_app_from_env",
    "hash_key",
    "log_url",
    "read_log",
    "record_loadtest",
    "run_loadtest",
    "side_models",
]
