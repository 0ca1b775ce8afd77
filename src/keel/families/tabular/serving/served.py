"""The model a server answers with, and the watcher that swaps it when its alias moves."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from fastapi import FastAPI

from keel.data import records_to_frame
from keel.estimators import decides_itself
from keel.evaluation import decide
from keel.families.tabular.serving.fast import FastPath, compile_pipeline, verified
from keel.registry import LoadedPackage, alias_version, load_package, tracking
from keel.serving._http import logger, plain_list
from keel.tasks import get_task


class Served:
    """One loaded package and what answering with it needs, computed once.

    The app holds exactly one ``Served`` at a time. A request takes the reference once
    and uses it to the end, so a swap never changes the model under a request in
    flight: the old one finishes with the old model, the next gets the new one.
    """

    def __init__(self, package: LoadedPackage, alias: str | None = None) -> None:
        self.package = package
        self.model = package.model
        self.schema = package.schema
        self.feature_names = frozenset(c.name for c in package.schema.features)
        self.info = {
            "name": package.name,
            "version": package.version,
            "alias": alias or package.alias,
            "semver": package.semver,
        }
        self.kind = get_task(package.task)  # what this kind of model answers
        self.classes = [str(c) for c in getattr(package.model, "classes_", [])]
        self.positive = package.metadata.get("positive_class")
        threshold = package.metadata.get("decision_threshold")
        if not self.kind.thresholded or self.positive not in self.classes:
            threshold = None
        self.threshold = threshold
        # a fairness-mitigated model decides per row itself (keel.estimators) and may
        # need the sensitive features to do it: rows without them are refused
        self.own_decisions = decides_itself(package.model)
        self.required = list(package.metadata.get("requires_sensitive_features") or [])
        self.readiness: tuple[bool, str] | None = None  # (ready, why) once self-tested
        self._ready_lock = threading.Lock()
        self._background: Any = None  # the explainer's background rows, built on first use
        self._explainers: dict[int, Any] = {}
        self.fast = None if self.own_decisions else self._compiled()

    @property
    def loaded(self) -> LoadedPackage:
        """The package (the name every family's served object has)."""
        return self.package

    def _compiled(self) -> FastPath | None:
        """The compiled input path, if it reproduces the pipeline on the example rows."""
        rows = (self.package.documents.get("background.json") or [])[:200]
        if not rows:
            return None
        frame, problems = records_to_frame(rows, self.schema, extra="ignore")
        values, _ = records_to_frame(rows, self.schema, extra="ignore", as_columns=True)
        if frame is None or problems:
            return None
        fast = compile_pipeline(self.model)
        return fast if verified(fast, self.model, frame, values) else None

    def explain(
        self, instances: list[Any], explain_row: Any, extra: str = "reject", unseen: str = "accept"
    ) -> tuple[list[dict[str, Any]] | None, list[Any]]:
        """Local explanations of ``instances`` (``explain_row``: the tabular explainer)."""
        frame, errors = records_to_frame(
            instances, self.schema, required=self.required, extra=extra, unseen=unseen
        )
        if errors:
            return None, errors
        if self._background is None:
            rows = self.package.documents.get("background.json") or []
            background, problems = records_to_frame(rows, self.schema, extra="ignore")
            if background is None or problems:
                raise RuntimeError("the package's background rows do not fit its schema")
            self._background = background
        return [
            explain_row(
                self.model,
                frame.iloc[[i]],
                self._background,
                self.package.task,
                self.positive,
                top=len(self.schema.features),
                cache=self._explainers,
            )
            for i in range(len(frame))
        ], []

    @property
    def version(self) -> str:
        """The served version."""
        return self.info["version"]

    def describe(self) -> dict[str, Any]:
        """``GET /model``: what a client needs to know about the model."""
        meta = self.package.metadata
        run_id = meta.get("run_id")
        return {
            **self.info,
            "task": self.package.task,
            "classes": self.classes,
            "positive_class": self.positive,
            "decision_threshold": self.threshold,
            "decides_itself": self.own_decisions,
            "requires_sensitive_features": self.required,
            "inputs": [
                {
                    "name": c.name,
                    "type": c.kind,
                    "nullable": c.nullable,
                    **({"categories": list(c.categories)[:100]} if c.categories else {}),
                }
                for c in self.schema.features
            ],
            "card": {
                "model_uri": f"models:/{self.info['name']}/{self.version}",
                "html": f"runs:/{run_id}/card/model_card.html" if run_id else None,
                "command": f"keel card {self.info['name']}/{self.version}",
            },
        }

    def scores(self, answer: dict[str, Any]) -> list[float]:
        """The numbers the metrics histogram: P(positive) for binary, values for regression."""
        if not self.kind.labelled_classes:
            return [float(v) for v in answer["predictions"] if isinstance(v, int | float)]
        if self.kind.thresholded and self.positive is not None:
            return [row.get(str(self.positive), 0.0) for row in answer.get("probabilities", [])]
        return []

    def answer(
        self, instances: list[Any], extra: str = "reject", unseen: str = "accept"
    ) -> tuple[dict[str, Any] | None, list[Any]]:
        """Predictions for ``instances``, or the field errors that stop them."""
        frame, errors = records_to_frame(
            instances,
            self.schema,
            required=self.required,
            extra=extra,
            as_columns=self.fast is not None,
            unseen=unseen,
        )
        if errors:
            return None, errors
        # the compiled path (checked columns straight to the model's matrix) when it
        # was verified on the package's rows; the pipeline otherwise
        predictions, proba = self.outputs(frame, self.fast if self.fast is not None else None)
        answer: dict[str, Any] = {"predictions": predictions}
        if proba is not None:
            if self.threshold is not None and not self.own_decisions:
                answer["decision_threshold"] = self.threshold
            answer["probabilities"] = [
                dict(zip(self.classes, row, strict=True)) for row in np.round(proba, 6).tolist()
            ]
        answer["model"] = self.info
        return answer, []

    def outputs(self, frame: Any, model: Any = None) -> tuple[list[Any], np.ndarray | None]:
        """Predictions (and class probabilities) of checked rows: ``/predict``'s rule.

        One pass through the pipeline (``model``: the compiled path, default the
        package's pipeline). Binary models decide at the threshold chosen on validation
        (the one the test metrics were computed at); otherwise the most probable class,
        what the model's predict() returns. Batch inference uses the same method.
        """
        model = model if model is not None else self.model
        if self.kind.labelled_classes and hasattr(model, "predict_proba"):
            proba = model.predict_proba(frame)
            if self.own_decisions:
                predictions = plain_list(np.asarray(model.predict(frame)))
            elif self.threshold is not None:
                predictions = decide(proba, self.classes, self.positive, self.threshold).tolist()
            else:
                predictions = plain_list(model.classes_[proba.argmax(axis=1)])
            return predictions, proba
        return plain_list(model.predict(frame)), None

    def self_test(self) -> None:
        """Answer the package's own example rows; raises if the model cannot serve."""
        rows = self.package.documents.get("background.json") or []
        if rows:
            answer, errors = self.answer(rows[:20])
            if errors or answer is None or len(answer["predictions"]) != len(rows[:20]):
                raise RuntimeError(f"the model failed its own example rows: {errors[:1]}")
        self.readiness = (True, _answered(len(rows[:20])))

    def check_ready(self) -> tuple[bool, str]:
        """Whether the model answered its own example rows (tested once, then remembered)."""
        if self.readiness is None:
            with self._ready_lock:
                if self.readiness is None:
                    try:
                        self.self_test()
                    except Exception as exc:  # not ready: say why, without internals
                        logger.error("self-test failed: %s", type(exc).__name__, exc_info=exc)
                        self.readiness = (
                            False,
                            f"the model failed its own example rows ({type(exc).__name__})",
                        )
        return self.readiness


class AliasWatcher:
    """Follow ``name@alias`` in the registry and swap the served model when it moves.

    A daemon thread asks the registry every ``poll_seconds`` which version the alias
    points at. When it changed, the new version is loaded beside the old one and
    answers the package's example rows; only then is the app's ``Served`` replaced (one
    reference assignment: atomic). A version that fails to load or to answer is not
    swapped in: the old model keeps serving and the failure is logged.

    ``extra`` follows more aliases into other slots of ``app.state`` (``shadow``,
    ``canary``): there an alias that disappears empties the slot.
    """

    def __init__(
        self,
        app: FastAPI,
        name: str,
        alias: str,
        tracking_uri: str,
        poll_seconds: float,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.app, self.name, self.alias = app, name, alias
        self.slots = {"served": alias, **(extra or {})}
        self.tracking_uri, self.poll_seconds = tracking_uri, poll_seconds
        self.swaps = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="keel-alias-watch", daemon=True)
        self._failed: dict[str, str | None] = {}

    def start(self) -> None:
        """Start polling."""
        self._thread.start()

    def stop(self) -> None:
        """Stop polling (the thread ends within one poll)."""
        self._stop.set()

    def _loop(self) -> None:
        client = tracking.client_for(self.tracking_uri)
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll(client)
            except Exception as exc:  # the registry may be briefly unreachable
                logger.warning("alias watch: %s", type(exc).__name__)

    def poll(self, client: Any) -> bool:
        """Check every followed alias once; swap what moved. True when a swap happened."""
        swapped = False
        for slot, alias in self.slots.items():
            swapped = self._poll_slot(client, slot, alias) or swapped
        return swapped

    def _poll_slot(self, client: Any, slot: str, alias: str) -> bool:
        held = getattr(self.app.state, slot, None)
        version = alias_version(client, self.name, alias)
        if version is None:  # no such alias (or the registry refused)
            if slot != "served" and held is not None:
                setattr(self.app.state, slot, None)
                logger.warning("%s@%s is gone: no %s model now", self.name, alias, slot)
                return True
            return False
        current = held.version if held is not None else None
        if version == current or version == self._failed.get(slot):
            return False
        try:
            candidate = Served(load_package(f"{self.name}/{version}", self.tracking_uri), alias)
            candidate.self_test()
        except Exception as exc:
            self._failed[slot] = version
            logger.error(
                "not swapping %s to %s version %s: %s; keeping version %s",
                slot,
                self.name,
                version,
                type(exc).__name__,
                current,
            )
            return False
        setattr(self.app.state, slot, candidate)  # the swap: one reference assignment
        self._failed[slot] = None
        if slot == "served":
            self.swaps += 1
            metrics = getattr(self.app.state, "metrics", None)
            if metrics is not None:
                metrics.serving(candidate.info, held.info if held is not None else None)
                metrics.swaps.inc()
            logger.warning(
                "%s@%s moved: now serving version %s (was %s)", self.name, alias, version, current
            )
        else:
            logger.warning("%s model is now %s version %s", slot, self.name, version)
        return True


def _answered(rows: int) -> str:
    if not rows:
        return "the package has no example rows: loaded, not tested"
    return f"answered its {rows} example row(s)"
