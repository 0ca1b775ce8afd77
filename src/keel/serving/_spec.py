"""What ``keel serve`` hands each worker process: one typed spec, one variable.

uvicorn starts workers with ``--factory``; they cannot be passed Python objects, so the
spec travels as JSON in ``KEEL_SERVE_SPEC`` and is checked when it is read back.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from keel.config import MonitoringConfig, PrivacyConfig, ServingConfig

SPEC_ENV = "KEEL_SERVE_SPEC"
POLL_SECONDS = 5.0


class ServingSpec(BaseModel):
    """Everything a server process needs to build its app.

    Attributes
    ----------
    model : str
        ``NAME/VERSION`` of the package to load from the registry.
    tracking_uri : str
        The MLflow store holding the registry.
    follow_alias : str, optional
        Follow ``NAME@ALIAS`` and swap models when it moves.
    poll_seconds : float
        How often the alias is checked.
    serving, monitoring, privacy
        keel.yaml's ``serving:``, ``monitoring:`` and ``privacy:``.
    log_url : str, optional
        Where the prediction log is written (``None``: off).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1)
    tracking_uri: str = Field(min_length=1)
    follow_alias: str | None = None
    poll_seconds: float = Field(POLL_SECONDS, gt=0.0)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    log_url: str | None = None

    def to_env(self) -> dict[str, str]:
        """The spec as the one environment variable workers read."""
        return {SPEC_ENV: self.model_dump_json()}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServingSpec:
        """The spec ``keel serve`` put in the environment (a clear error when absent)."""
        env = os.environ if environ is None else environ
        raw = env.get(SPEC_ENV)
        if not raw:
            raise RuntimeError(
                f"{SPEC_ENV} is not set: start the server with `keel serve`, which sets it"
            )
        return cls.model_validate_json(raw)
