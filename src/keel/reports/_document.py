"""The run report as a typed object: what ``keel run`` found, and what every page reads.

``report.json`` is its JSON form. It is written by the pipeline's ``register`` stage,
completed by ``compare`` (the comparison with the champion and the alias the version
takes), and read by the report page, the model card, ``keel card`` and ``keel
reproduce`` — all through :class:`RunReport`, so a report that lacks a part is refused
with the part's name instead of failing deep inside a page.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from keel.errors import DataError


@dataclass(frozen=True)
class ModelSummary:
    """The registered version a run produced."""

    name: str
    version: str
    candidate: str
    alias: str | None = None
    positive_class: str | None = None


@dataclass(frozen=True)
class RunReport:
    """Everything a run found, in the shape ``report.json`` keeps it.

    The top level is typed; ``assessment``, ``data``, ``tuning``, ``candidates`` and
    ``schema`` are the JSON documents of the stages that made them.
    """

    run_id: str
    task: str
    primary_metric: str
    model: ModelSummary
    test_metrics: dict[str, float]
    assessment: dict[str, Any] = field(default_factory=dict)
    tuning: dict[str, Any] = field(default_factory=dict)
    candidates: list[dict[str, Any]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    schema: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``report.json``)."""
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))

    def completed(self, alias: str | None, versus: dict[str, Any] | None) -> RunReport:
        """The report with the alias the version takes and its comparison with the champion."""
        assessment = dict(self.assessment)
        if versus is not None:
            assessment["versus_champion"] = versus
        return dataclasses.replace(
            self, model=dataclasses.replace(self.model, alias=alias), assessment=assessment
        )

    @classmethod
    def from_dict(cls, document: Any, origin: str = "report.json") -> RunReport:
        """Read a report back; a missing or malformed part is a ``DataError`` naming it."""
        if not isinstance(document, dict):
            raise DataError(f"{origin}: not a JSON object")
        missing = [k for k in ("run_id", "task", "primary_metric", "model") if k not in document]
        model = document.get("model")
        if not missing and (not isinstance(model, dict) or "candidate" not in model):
            missing = ["model.candidate"]
        if missing:
            raise DataError(
                f"{origin}: lacks {', '.join(missing)}; it was not written by `keel run`"
                " (or by an older Keel)"
            )
        return cls(
            run_id=str(document["run_id"]),
            task=str(document["task"]),
            primary_metric=str(document["primary_metric"]),
            model=ModelSummary(
                name=str(model.get("name", "")),
                version=str(model.get("version", "")),
                candidate=str(model["candidate"]),
                alias=model.get("alias"),
                positive_class=model.get("positive_class"),
            ),
            test_metrics=dict(document.get("test_metrics") or {}),
            assessment=dict(document.get("assessment") or {}),
            tuning=dict(document.get("tuning") or {}),
            candidates=list(document.get("candidates") or []),
            data=dict(document.get("data") or {}),
            schema=dict(document.get("schema") or {}),
        )


__all__ = ["ModelSummary", "RunReport"]
