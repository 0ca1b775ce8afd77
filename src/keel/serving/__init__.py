"""Serving: the FastAPI app over a model package loaded from the registry."""

from keel.serving._app import create_app, create_app_from_env, create_app_from_spec
from keel.serving._family_app import (
    ServedPackage,
    core_routes,
    create_family_app,
    family_app_from_spec,
)
from keel.serving._http import MAX_BODY_BYTES, MAX_INSTANCES, PredictRequest, new_request_id
from keel.serving._loadtest import LOADTEST_TAG, LoadResult, record_loadtest, run_loadtest
from keel.serving._log import PredictionLog, log_url, read_log
from keel.serving._observe import API_KEYS_ENV, Metrics, hash_key
from keel.serving._spec import POLL_SECONDS, SPEC_ENV, ServingSpec
from keel.serving._state import ServingState

__all__ = [
    "API_KEYS_ENV",
    "LOADTEST_TAG",
    "MAX_BODY_BYTES",
    "MAX_INSTANCES",
    "POLL_SECONDS",
    "SPEC_ENV",
    "LoadResult",
    "Metrics",
    "PredictRequest",
    "PredictionLog",
    "ServedPackage",
    "ServingSpec",
    "ServingState",
    "core_routes",
    "create_app",
    "create_app_from_env",
    "create_app_from_spec",
    "create_family_app",
    "family_app_from_spec",
    "hash_key",
    "log_url",
    "new_request_id",
    "read_log",
    "record_loadtest",
    "run_loadtest",
]
