"""Configuration: the ``keel.yaml`` model, its defaults and path resolution."""

from keel.config._load import CONFIG_FILENAME, load_config, parse_config
from keel.config._model import (
    CANDIDATES,
    DATA_SUFFIXES,
    TASKS,
    BehaviourTest,
    CandidateName,
    CardConfig,
    DirectionalTest,
    DvcSource,
    FairnessConfig,
    InvarianceTest,
    MinimumTest,
    PiiConfig,
    ProjectConfig,
    SplitConfig,
    SqlSource,
    TaskType,
)
from keel.config._settings import TRACKING_URI_ENV, Settings, resolve_settings, sqlite_uri

__all__ = [
    "CANDIDATES",
    "CONFIG_FILENAME",
    "DATA_SUFFIXES",
    "TASKS",
    "TRACKING_URI_ENV",
    "BehaviourTest",
    "CandidateName",
    "CardConfig",
    "DirectionalTest",
    "DvcSource",
    "FairnessConfig",
    "InvarianceTest",
    "MinimumTest",
    "PiiConfig",
    "ProjectConfig",
    "Settings",
    "SplitConfig",
    "SqlSource",
    "TaskType",
    "load_config",
    "parse_config",
    "resolve_settings",
    "sqlite_uri",
]
