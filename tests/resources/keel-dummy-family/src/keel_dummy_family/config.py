"""The constant family's own keel.yaml section: ``constant: {statistic: mean|median}``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class ConstantSettings(BaseModel):
    """Which statistic of the training rows the constant model predicts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    statistic: Literal["mean", "median"] = "mean"
