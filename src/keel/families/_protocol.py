"""The ``Family`` protocol: what differs between kinds of model, one object per kind.

A family is a folder ``keel/families/<name>/`` (or a package registered under the
entry-point group ``keel.families``) whose ``__init__`` defines one :class:`Family`
object. The generic layers own the loop, the I/O, MLflow, HTTP, the prediction log and
the stage runner; they ask the family for plain data and functions — its stage graph,
its result document, its package loader, its serving app, its monitoring windows, its
run table, card and runbook sections — and they ask its declared
:class:`Capabilities` where they need to know what it can do, never its name.

A family's ``__init__`` is a cheap descriptor: every method imports the family's own
modules (and their heavy libraries) when it is called.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from pathlib import Path


@dataclass(frozen=True)
class Capabilities:
    """What a family can do, declared as data (scikit-learn's tags, not names).

    Attributes
    ----------
    has_target : bool
        Rows carry a labelled target column: ``keel validate``, ``keel drift`` and
        behaviour tests apply.
    ranks : bool
        Answers are ranked lists (items for a user, documents for a question).
    serves_routes : tuple of str
        The routes the family's serving app adds to the common ones.
    supports_shadow : bool
        A challenger can be served in shadow / canary beside the champion.
    batch_predict : bool
        ``keel predict FILE`` scores a file offline.
    builds_image : bool
        ``keel build`` writes a Dockerfile, KServe and Kubernetes files for it.
    explains : bool
        ``POST /explain`` and SHAP explanations of single answers.
    reads_folders : bool
        ``data:`` may be a folder (of documents), not only a table file.
    ab_tests : bool
        A running A/B test routes units to a challenger (``keel experiment``).
    """

    has_target: bool = False
    ranks: bool = False
    serves_routes: tuple[str, ...] = ()
    supports_shadow: bool = False
    batch_predict: bool = False
    builds_image: bool = False
    explains: bool = False
    reads_folders: bool = False
    ab_tests: bool = False


class Family:
    """One kind of model through the whole lifecycle (template-method style).

    Subclasses set the class attributes and fill in the methods; a method left out
    raises ``NotImplementedError`` naming the family and what is missing, and generic
    code checks :attr:`capabilities` before it asks for optional parts.

    Attributes
    ----------
    name : str
        The family's name (``keel.family`` on every run, version and package).
    tasks : tuple of str
        The ``task:`` values of keel.yaml this family runs.
    default : bool
        This family runs a project whose keel.yaml names no task (one family only; its
        task is inferred from the target).
    capabilities : Capabilities
        What generic code may ask of it.
    task_module : str
        The module whose import registers the family's task plug-ins.
    commands_module : str or None
        A module registering the family's own ``keel`` commands on import
        (``@keel.cli._common.app.command()``), e.g. ``keel recommend``.
    stage_names : tuple of str
        The stages ``keel run`` runs, in order (written out: ``keel --help`` and the
        progress bar read them without importing the graph; a test keeps them true).
    """

    name: ClassVar[str]
    tasks: ClassVar[tuple[str, ...]]
    default: ClassVar[bool] = False
    capabilities: ClassVar[Capabilities] = Capabilities()
    task_module: ClassVar[str]
    stage_names: ClassVar[tuple[str, ...]]
    commands_module: ClassVar[str | None] = None
    subject_documents: ClassVar[tuple[str, ...]] = ()  # package documents naming people
    config_keys: ClassVar[tuple[str, ...]] = ()  # keel.yaml keys only this family reads
    config_section: ClassVar[str | None] = None  # a keel.yaml key of the family's own settings
    # modules the family imports beyond Keel's core, and the extra that installs them
    requires: ClassVar[tuple[str, ...]] = ()
    extra: ClassVar[str | None] = None
    baselines: ClassVar[tuple[str, ...]] = ()  # models every run trains beside the candidates

    def __repr__(self) -> str:
        return f"<keel family {self.name!r}: tasks {', '.join(self.tasks)}>"

    def missing_extra(self, subject: str | None = None) -> str | None:
        """One line naming the extra this family needs and is not installed, or ``None``.

        Asks only whether ``requires`` can be found (nothing is imported): cheap enough
        for reading keel.yaml. ``subject`` opens the line (default ``task: <task>``).
        """
        from keel._extras import missing

        subject = subject or f"task: {self.tasks[0]}"
        return missing(self.extra or self.name, *self.requires, subject=subject)

    def _missing(self, what: str) -> NotImplementedError:
        return NotImplementedError(f"family {self.name!r} does not provide {what}")

    # --- tasks ------------------------------------------------------------------------

    def load_tasks(self) -> None:
        """Import the module that registers this family's task plug-ins."""
        import importlib

        importlib.import_module(self.task_module)

    # --- keel.yaml ---------------------------------------------------------------------

    def config_defaults(self, data: dict[str, Any]) -> dict[str, Any]:
        """keel.yaml as written, with the family's defaults where keys are unset."""
        return data

    def check_config(self, config: Any) -> None:
        """Raise a ``ValueError`` naming the key and the fix when keel.yaml breaks a rule."""

    def section_model(self) -> Any:
        """The pydantic model of the family's own keel.yaml section (``config_section``).

        Keel validates the section with it (unknown keys, types, ranges: each error names
        ``section.key``), keeps it as ``config.section``, records it with the config and
        writes it back under its key. Only families that set ``config_section`` need it.
        """
        raise self._missing(f"a model of its keel.yaml section {self.config_section!r}")

    # --- keel run -----------------------------------------------------------------------

    def lifecycle(self) -> tuple[Any, str]:
        """``(graph, last read-only stage)``: the stages ``keel run`` runs for this family."""
        raise self._missing("a stage graph")

    def result(self, state: Any, record: bool) -> dict[str, Any]:
        """The ``keel run --json`` document (``RunResult`` fields) of a finished run."""
        raise self._missing("a run result")

    def render_run(self, payload: dict[str, Any]) -> None:
        """Print the result of ``keel run`` on a terminal (tables)."""
        raise self._missing("a terminal view of a run")

    def reproduce_params(self, document: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """``(chosen candidate, tuning)`` of a run's ``report.json``."""
        raise self._missing("reproducible runs")

    # --- the package ---------------------------------------------------------------------

    def load(self, uri: str, tracking_uri: str) -> Any:
        """The registered package at ``uri``, loaded for serving and batch work."""
        raise self._missing("a package loader")

    # --- serving --------------------------------------------------------------------------

    def serving_parts(self) -> dict[str, Any]:
        """What the serving core needs from the family (plain functions).

        ``serve(loaded)`` → what the app serves (``keel.serving.ServedPackage`` or the
        family's own, with ``loaded``, ``version``, ``info``, ``check_ready()``);
        ``routes(state)`` → a FastAPI ``APIRouter`` with the answer routes;
        ``describe(served)`` → what ``GET /model`` adds. Optional: ``health``,
        ``before_metrics``, ``dashboard``, ``middleware``, ``attach``, ``follower``
        (see :func:`keel.serving.create_family_app`, which builds every family's app).
        """
        raise self._missing("a serving app")

    def app(self, package: Any, **options: Any) -> Any:
        """The family's own build of the app serving ``package``, or ``None``.

        ``None`` (the default): :func:`keel.serving.create_app` builds it on the core
        from :meth:`serving_parts`. A family whose parts depend on the options (the
        tabular shadow and canary) builds it here, still with ``create_family_app``.
        """
        return None

    def create_app(self, package: Any, spec: Any, log: Any, explain_row: Any = None) -> Any:
        """The family's own build of the app a ``ServingSpec`` describes, or ``None``.

        ``None`` (the default): the core builds it from :meth:`serving_parts`, workers
        follow the spec's alias and, with ``capabilities.ab_tests``, a running A/B test
        routes to a challenger the family loads.
        """
        return None

    def subject_column(self, config: Any) -> str | None:
        """The column naming a person in this family's data, when keel.yaml names none."""
        return None

    def subject_in_package(self, documents: dict[str, Any], subject: str) -> list[str]:
        """Where a package's own documents (``subject_documents``) name ``subject``."""
        return []

    def log_subject(self, package: Any) -> str | None:
        """The request field naming the person an answer is about (erasure, opt-out)."""
        return None

    def loadtest_bodies(
        self, model: dict[str, Any], tracking_uri: str, rows: int
    ) -> tuple[str, list[bytes]]:
        """``(route, JSON request bodies)`` that ``keel loadtest`` sends.

        ``model``: the served model's description (its ``/ready`` answer).
        """
        raise self._missing("load-test requests")

    def batch_predict(
        self, uri: str, tracking_uri: str, source: Any, out: Path, options: dict[str, Any]
    ) -> tuple[dict[str, Any], str, str]:
        """Score a file offline (``keel predict``): ``(summary, name, version)``."""
        raise self._missing("batch predictions")

    # --- monitoring ----------------------------------------------------------------------

    def monitor_windows(
        self,
        frame: Any,
        reference: dict[str, Any],
        meta: dict[str, Any],
        specs: dict[str, Any],
        min_rows: int,
        now: float,
    ) -> dict[str, Any]:
        """One monitoring report per window spec (``{key: spec}``): :meth:`judge_windows`."""
        return {
            key: self.judge_windows(frame, reference, meta, spec, min_rows, now)
            for key, spec in specs.items()
        }

    def monitor_log(
        self,
        chunks: Any,
        empty: Any,
        reference: dict[str, Any],
        meta: dict[str, Any],
        specs: dict[str, Any],
        min_rows: int,
        now: float,
    ) -> dict[str, Any]:
        """:meth:`monitor_windows` of a log read in pages.

        ``chunks()`` yields the version's log rows as tables, oldest first (a fresh
        iterator per call); ``empty`` is the table of a log with no rows. This default
        joins the pages into one table; a family whose logs grow large reads them page
        by page instead, holding one window at a time.
        """
        import pandas as pd

        frames = list(chunks())
        frame = pd.concat(frames, ignore_index=True) if frames else empty
        return self.monitor_windows(frame, reference, meta, specs, min_rows, now)

    def judge_windows(
        self,
        frame: Any,
        reference: dict[str, Any],
        meta: dict[str, Any],
        window: str | int,
        min_rows: int,
        now: float | None,
    ) -> Any:
        """The ``MonitorReport`` of the log ``frame`` cut in ``window``s.

        Judged against the package's monitoring reference (families without a target).
        """
        raise self._missing("monitoring windows")

    def render_dashboard(self, found: dict[str, Any], alerts: list[dict[str, Any]]) -> str:
        """The monitoring dashboard page (HTML) of a ``keel monitor`` report."""
        raise self._missing("a dashboard")

    def monitor_table(self) -> tuple[tuple[str, ...], Any]:
        """``(column heads, row of a window)`` of ``keel monitor`` on a terminal."""
        raise self._missing("a monitoring table")

    def reference_description(self) -> str:
        """What the package's monitoring reference watches, in words (``keel check``)."""
        return "drift reference"

    def package_evidence(self) -> str:
        """What the family's package checks before registration proved (``keel check``)."""
        return "its package checks"

    # --- cards, governance, experiments ------------------------------------------------

    def write_card(
        self, document: dict[str, Any], info: dict[str, Any], extra: dict[str, Any], folder: Path
    ) -> dict[str, str]:
        """Write the card (and governance documents) of a registered version into ``folder``.

        ``document``: the run's ``reports/report.json``; ``info``: the version (aliases,
        tags, dates); ``extra``: ``loadtest``, ``config`` (its keel.yaml), ``documents``.
        """
        raise self._missing("a model card")

    def experiment_kind(self, task: Any) -> str:
        """What an A/B test of this family's models compares.

        One of ``lists``, ``classes`` or ``numbers``; a family whose answers are none of
        these raises ``KeelInputError`` saying why.
        """
        raise self._missing("A/B test metrics")
