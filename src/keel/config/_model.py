"""The ``keel.yaml`` model: what a project may configure, checked at load time."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    field_validator,
    model_serializer,
    model_validator,
)

TaskType = Literal["binary", "multiclass", "regression", "recommendation", "retrieval"]
# the recommenders a recommendation project may tune (``candidates:``)
RecommenderName = Literal["item_knn", "ease", "als", "bpr"]
SplitStrategy = Literal["global_time", "user_time", "leave_last_out"]
CandidateName = Literal[
    "dummy",
    "linear",
    "shallow_tree",
    "lightgbm",
    "xgboost",
    "hist_gradient_boosting",
    "random_forest",
    "ensemble",
]

TASKS: tuple[str, ...] = get_args(TaskType)
CANDIDATES: tuple[str, ...] = get_args(CandidateName)
BASELINE_NAMES: tuple[str, ...] = ("dummy", "linear", "shallow_tree")
# the candidates tuning searches (keel.families.tabular.training.SEARCH_SPACES); an
# ensemble combines them
TUNABLE: tuple[str, ...] = ("lightgbm", "xgboost", "hist_gradient_boosting", "random_forest")
ENSEMBLE = "ensemble"
RECOMMENDATION = "recommendation"
RECOMMENDERS: tuple[str, ...] = get_args(RecommenderName)
RECOMMENDER_BASELINES: tuple[str, ...] = ("random", "popularity", "recent_popularity")
DEFAULT_RECOMMENDERS: tuple[str, ...] = ("item_knn", "ease", "als")
DEFAULT_K: tuple[int, ...] = (5, 10, 20)
RECOMMENDATION_KEYS = (
    "user_column",
    "item_column",
    "rating_column",
    "relevant_from",
    "users",
    "items",
    "item_attribute",
)
RetrieverName = Literal["bm25", "dense", "hybrid"]
RETRIEVAL = "retrieval"
RETRIEVER_NAMES: tuple[str, ...] = get_args(RetrieverName)
RETRIEVER_BASELINES: tuple[str, ...] = ("overlap",)
RETRIEVAL_KEYS = ("queries", "text_column", "id_column", "title_column")
ModelName = Literal[CANDIDATES + RECOMMENDERS + RETRIEVER_NAMES]  # any task's candidates
DATA_SUFFIXES: tuple[str, ...] = (".csv", ".parquet", ".pq", ".jsonl", ".ndjson")

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SplitConfig(_Strict):
    """Fractions of the rows held out for validation and for the final test.

    ``strategy`` is for recommendation only: ``global_time`` (default: one cut-off in
    time for every user, so nothing is learnt from the future), ``user_time`` (each
    user's last ``test`` share of interactions) or ``leave_last_out`` (each user's last
    interaction). Validation is cut from what is left, the same way.
    """

    validation: float = Field(0.2, gt=0.0, lt=1.0)
    test: float = Field(0.2, gt=0.0, lt=1.0)
    strategy: SplitStrategy | None = None

    @model_validator(mode="after")
    def _leave_rows_to_train(self) -> SplitConfig:
        if self.validation + self.test > 0.8:
            raise ValueError(
                "split.validation + split.test must leave at least 20% of rows to train, "
                f"got {self.validation} + {self.test}"
            )
        return self


class SqlSource(_Strict):
    """Rows from a SQL query: ``data: {url: <SQLAlchemy URL>, query: SELECT ...}``."""

    url: str = Field(min_length=1)
    query: str = Field(min_length=1)


class DvcSource(_Strict):
    """A DVC-tracked file: ``data: {dvc: path/in/repo.csv, rev: v1.0, repo: .}``."""

    dvc: str = Field(min_length=1)
    rev: str | None = None
    repo: str | None = None

    @field_validator("dvc")
    @classmethod
    def _known_suffix(cls, value: str) -> str:
        return _check_suffix(value)


def _check_suffix(value: str) -> str:
    if Path(value).suffix.lower() not in DATA_SUFFIXES:
        raise ValueError(
            f"must be a file ending in one of {', '.join(DATA_SUFFIXES)}, got {value!r}"
        )
    return value


def _data_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "dvc" if "dvc" in value else "sql"
    # serialising a parsed config sees the source objects themselves
    if isinstance(value, DvcSource):
        return "dvc"
    if isinstance(value, SqlSource):
        return "sql"
    return "file"


DataSpec = Annotated[
    Annotated[str, Tag("file")]
    | Annotated[SqlSource, Tag("sql")]
    | Annotated[DvcSource, Tag("dvc")],
    Discriminator(_data_kind),
]


class InvarianceTest(_Strict):
    """Changing ``feature`` (to any other value seen) must not move the score more than ε."""

    kind: Literal["invariance"]
    feature: str
    max_change: float = Field(0.05, ge=0.0)


class DirectionalTest(_Strict):
    """Raising ``feature`` by ``step`` (default: one std) must not lower (raise) the score."""

    kind: Literal["directional"]
    feature: str
    direction: Literal["increasing", "decreasing"] = "increasing"
    step: float | None = Field(None, gt=0.0)
    tolerance: float = Field(1e-6, ge=0.0)


class MinimumTest(_Strict):
    """On the test rows matching ``where``, ``metric`` must reach ``min``."""

    kind: Literal["minimum"]
    where: dict[str, str | int | float | bool]
    metric: str
    min: float


BehaviourTest = Annotated[
    InvarianceTest | DirectionalTest | MinimumTest, Field(discriminator="kind")
]


class FairnessConfig(_Strict):
    """How fairness is assessed and judged: ``fairness: {...}`` in keel.yaml.

    Limits are judged on groups with at least ``min_group_size`` test rows; a limit
    left unset is reported but not judged.

    ``mitigation`` picks how the shipped model is made fairer: ``reweighing`` (rows
    reweighted before fitting), ``exponentiated_gradient`` (fairlearn's reduction: a
    weighted mixture of models fitted under ``constraint``, at most
    ``mitigation_iterations`` of them) or ``threshold_optimizer`` (fairlearn's
    post-processing: per-group thresholds on the model's score meeting ``constraint``;
    needs the sensitive features at prediction time). The last two are for binary
    tasks and decide at random per row — with a coin fixed by the row's values.
    """

    min_group_size: int = Field(30, ge=1)
    bins: dict[str, list[float]] = Field(default_factory=dict)
    max_demographic_parity_difference: float | None = Field(None, ge=0.0, le=1.0)
    min_demographic_parity_ratio: float | None = Field(None, ge=0.0, le=1.0)
    max_equalized_odds_difference: float | None = Field(None, ge=0.0, le=1.0)
    max_equal_opportunity_difference: float | None = Field(None, ge=0.0, le=1.0)
    min_disparate_impact_ratio: float | None = Field(None, ge=0.0, le=1.0)
    max_accuracy_difference: float | None = Field(None, ge=0.0, le=1.0)
    # recommendation: per-user NDCG and recall across user groups
    max_ndcg_difference: float | None = Field(None, ge=0.0, le=1.0)
    min_ndcg_ratio: float | None = Field(None, ge=0.0, le=1.0)
    max_recall_difference: float | None = Field(None, ge=0.0, le=1.0)
    intersections: bool = True
    resamples: int = Field(200, ge=0, le=5000)
    mitigation: Literal["none", "reweighing", "exponentiated_gradient", "threshold_optimizer"] = (
        "none"
    )
    constraint: Literal[
        "demographic_parity",
        "equalized_odds",
        "true_positive_rate_parity",
        "false_positive_rate_parity",
    ] = "demographic_parity"
    mitigation_iterations: int = Field(50, ge=1, le=1000)

    @field_validator("bins")
    @classmethod
    def _edges_increase(cls, value: dict[str, list[float]]) -> dict[str, list[float]]:
        for name, edges in value.items():
            if not edges or any(b <= a for a, b in itertools.pairwise(edges)):
                raise ValueError(f"bins for {name!r} must be increasing numbers, got {edges}")
        return value

    @property
    def limits(self) -> dict[str, tuple[str, float]]:
        """Configured limits: measure name → ("max" | "min", value)."""
        out = {}
        for key, value in self.model_dump().items():
            if value is not None and key.startswith(("max_", "min_")) and key != "min_group_size":
                out[key[4:]] = (key[:3], float(value))
        return out


class CardConfig(_Strict):
    """What people must say about the model: ``card:`` in keel.yaml.

    The words of the model card, the datasheet, the runbook (``contacts``,
    ``retirement``) and the impact assessment (``business_objective``,
    ``success_metrics``, ``misuses``, ``mitigations``). What a run measured is added
    by Keel; only people can say these.
    """

    owners: list[str] = Field(default_factory=list)
    contacts: list[str] = Field(default_factory=list)  # who to call, in the runbook
    intended_use: str | None = None
    out_of_scope: list[str] = Field(default_factory=list)
    limitations: list[str] = Field(default_factory=list)
    ethical_considerations: list[str] = Field(default_factory=list)
    data_collection: str | None = None
    business_objective: str | None = None
    success_metrics: list[str] = Field(default_factory=list)
    misuses: list[str] = Field(default_factory=list)
    mitigations: list[str] = Field(default_factory=list)
    # when and how a version is retired (the runbook states it; a default is written)
    retirement: str | None = None


class PrivacyConfig(_Strict):
    """Consent, erasure and retention: ``privacy:`` in keel.yaml.

    A request with ``"opt_out": true`` in its body (``/predict``, ``/recommend``,
    ``/feedback``, ``/v2/.../infer``), or the ``opt_out_header`` header set to
    ``1``/``true``/``yes``, is answered but not logged: only counted (per hour, and in
    ``/metrics``). Its rows never reach monitoring or retraining. ``keel forget
    --subject ID`` erases a data subject's logged rows by ``subject_column`` (a request
    field such as ``user_id``, stored as its SHA-256 beside each logged row; for a
    recommender its user column by default). Rows older than ``retention_days`` are
    purged by ``keel forget --expired`` and by ``keel serve`` (at start and every hour).
    ``purpose`` and ``collected`` are the datasheet's data-use statement.
    """

    opt_out_header: str = Field("X-Keel-Opt-Out", min_length=1, max_length=100)
    subject_column: str | None = None
    retention_days: int | None = Field(None, ge=1, le=36_500)
    purpose: str | None = None
    collected: str | None = None


class RobustnessConfig(_Strict):
    """Adversarial robustness tests and their limits: ``robustness:`` in keel.yaml.

    Tabular models: Gaussian noise of ``noise`` × each numeric feature's standard
    deviation, category swaps and missing values on ``rows`` test rows, and a
    black-box search for the smallest change of one or two features that flips a
    decision (``search_rows`` rows, steps up to ``budget`` standard deviations).
    Recommenders: ``shilling_share`` × users of fake profiles pushing one item.
    A limit left unset is reported, not judged; a set limit that is crossed fails the
    ``robustness`` gate (and the alias, like a behaviour test).
    """

    enabled: bool = True
    rows: int = Field(500, ge=10, le=100_000)
    noise: list[float] = Field(default_factory=lambda: [0.05, 0.1, 0.25, 0.5, 1.0])
    search_rows: int = Field(100, ge=0, le=10_000)
    budget: float = Field(0.5, gt=0.0, le=10.0)
    max_flip_rate: float | None = Field(None, ge=0.0, le=1.0)  # at noise 0.1
    max_missing_flip_rate: float | None = Field(None, ge=0.0, le=1.0)
    max_flipped_within_budget: float | None = Field(None, ge=0.0, le=1.0)
    shilling_share: float = Field(0.01, gt=0.0, le=0.5)
    max_shilling_gain: float | None = Field(None, ge=0.0)  # exposure share gained

    @field_validator("noise")
    @classmethod
    def _levels(cls, value: list[float]) -> list[float]:
        if not value or any(v <= 0 or v > 10 for v in value):
            raise ValueError(f"noise levels must be in (0, 10] standard deviations, got {value}")
        return sorted(set(value))


class ReleaseConfig(_Strict):
    """What a promotion to production also does: ``release: {git_tag: true}``.

    With ``git_tag`` the commit the version was trained from is tagged
    ``NAME-vX.Y.Z`` (its semantic version), the message naming the registry version
    and the data digest, when ``champion`` or ``production`` moves to it.
    """

    git_tag: bool = False


# The Definition of Done, one gate per checklist item (see ``keel check``).
MODEL_GATES = (
    "schema",
    "feature_code",
    "tracked",
    "evaluated",
    "fairness",
    "registered",
    "load_tested",
    "drift",
    "dashboard",
    "rollback",
    "tests",
    "runbook",
    "robustness",
    "impact_assessment",
)
PIPELINE_GATES = (
    "stage_io",
    "boundary_validation",
    "idempotent",
    "failure_alerts",
    "lineage",
    "end_to_end",
)
GateName = Literal[MODEL_GATES + PIPELINE_GATES]  # the names above, for validation
DEFAULT_REQUIRED_GATES = [
    "schema",
    "tracked",
    "evaluated",
    "fairness",
    "registered",
    "rollback",
    "stage_io",
    "boundary_validation",
    "lineage",
    "end_to_end",
]


class Waiver(_Strict):
    """Why a gate is not required to pass for this project, and who said so."""

    reason: str = Field(min_length=3)
    author: str = Field(min_length=1)


class GatesConfig(_Strict):
    """Which Definition-of-Done gates must pass, and signed waivers: ``gates:`` in keel.yaml.

    ``required`` gates must pass (or be waived) for ``keel check`` to pass and for
    ``keel promote`` to move ``champion`` without ``--force``; the others are reported.
    """

    required: list[GateName] = Field(default_factory=lambda: list(DEFAULT_REQUIRED_GATES))
    waivers: dict[GateName, Waiver] = Field(default_factory=dict)


class ApiKey(_Strict):
    """One API key, stored only as its SHA-256 (``keel apikey`` makes one)."""

    name: str = Field(min_length=1, max_length=100)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    scopes: list[Literal["predict", "admin"]] = Field(default_factory=lambda: ["predict"])


class CanaryConfig(_Strict):
    """Send a share of the traffic to another alias: ``{alias: challenger, percent: 5}``."""

    alias: str = Field(min_length=1, max_length=100)
    percent: float = Field(gt=0.0, le=50.0)


class ServingConfig(_Strict):
    """How `keel serve` answers: ``serving:`` in keel.yaml.

    With ``api_keys`` (or ``KEEL_API_KEYS``) every request but the health checks needs
    ``Authorization: Bearer KEY`` (or ``X-API-Key``) with the endpoint's scope.
    """

    max_instances: int = Field(10_000, ge=1, le=1_000_000)
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024, le=1024**3)
    extra_fields: Literal["reject", "ignore"] = "reject"
    # a category never seen in training: accept (the model's encoder puts it in its
    # "infrequent" bucket, as it was trained to) or reject with a 422
    unseen_categories: Literal["accept", "reject"] = "accept"
    api_keys: list[ApiKey] = Field(default_factory=list)
    detailed_errors_for_anonymous: bool = True
    # where every prediction is logged: a SQLite file (relative to keel.yaml) or a
    # database URL (postgresql://...); null turns the log off
    prediction_log: str | None = ".keel/predictions.db"
    log_flush_seconds: float = Field(0.5, gt=0.0, le=60.0)
    # score every request with this alias too, off the hot path, and log the agreement
    shadow: str | None = None
    canary: CanaryConfig | None = None
    # PII actions for logged inputs, on top of keel.yaml's pii.columns
    redact: dict[str, Literal["redact", "mask", "hash", "drop"]] = Field(default_factory=dict)
    # FastAPI's native OpenTelemetry spans and metrics (when OTel providers are set up);
    # off by default: Keel exports Prometheus metrics, and the per-request check costs
    opentelemetry: bool = False


MonitorMetric = Literal[
    "dataset_drift",  # 1 when the window's features drift (the drift verdict), else 0
    "drift_share",  # share of features that drift
    "max_psi",  # the largest PSI of any feature
    "prediction_drift",  # 1 when the model's outputs drift, else 0
    "prediction_psi",
    "accuracy",
    "balanced_accuracy",
    "roc_auc",
    "mae",
    "rmse",
    "demographic_parity_difference",  # largest over the sensitive features
    "accuracy_difference",
    "latency_p95_ms",
    "unseen_share",  # share of rows with a category never seen in training
    # recommenders
    "cold_start_share",  # share of requests answered with the popularity fallback
    "coverage",  # distinct items recommended / catalogue
    "popularity_psi",  # popularity bands of recommended items vs the test-period lists
    "requested_popularity_psi",  # of the histories sent with requests vs training
    "consumed_popularity_psi",  # of consumed items (feedback) vs training interactions
    "hit_rate",  # requests whose list held a consumed item (feedback)
    "ctr",  # consumed recommended items / items shown (requests with feedback)
    "hit_rate_difference",  # largest hit-rate gap between user groups of 20+ requests
    # retrieval models
    "query_drift",  # question centroid distance / the labelled questions' p95 distance
    "out_of_corpus_share",  # questions less similar to the corpus than 95% of labelled ones
    "no_answer_rate",  # answered questions with nothing to say
    "block_rate",  # questions or answers blocked by a guardrail
    "cache_hit_rate",  # exact or near-duplicate cache hits
    "helpful_rate",  # answers marked helpful in /feedback
]
# metrics that are bad when low; every other is bad when high
LOWER_IS_WORSE = frozenset(
    {
        "accuracy",
        "balanced_accuracy",
        "roc_auc",
        "coverage",
        "hit_rate",
        "ctr",
        "cache_hit_rate",
        "helpful_rate",
    }
)


class AlertRule(_Strict):
    """Alert when ``metric`` of a window crosses ``threshold``.

    ``when`` defaults to ``below`` for accuracy, balanced_accuracy and roc_auc and to
    ``above`` for everything else; drift verdicts are 0/1 (threshold 0.5).
    ``window`` overrides ``monitoring.window`` for this rule.
    """

    metric: MonitorMetric
    threshold: float = 0.5
    when: Literal["above", "below"] | None = None
    window: str | int | None = None
    severity: Literal["info", "warning", "critical"] = "warning"

    @field_validator("window")
    @classmethod
    def _window(cls, value: str | int | None) -> str | int | None:
        return None if value is None else check_window(value)

    @property
    def key(self) -> str:
        """What names this rule in alert state (one incident per rule and version)."""
        return f"{self.metric} {self.direction} {self.threshold:g} window {self.window or '-'}"

    @property
    def direction(self) -> str:
        """``above`` or ``below``: which side of the threshold alerts."""
        return self.when or ("below" if self.metric in LOWER_IS_WORSE else "above")


class AlertSink(_Strict):
    """Where alerts go: ``log`` (keel's log), ``jsonl`` (a file), ``webhook`` (HTTP POST)."""

    type: Literal["log", "jsonl", "webhook"]
    path: str | None = None  # jsonl: relative to keel.yaml
    url: str | None = None  # webhook
    timeout_seconds: float = Field(5.0, gt=0.0, le=120.0)
    retries: int = Field(3, ge=0, le=10)

    @model_validator(mode="after")
    def _target(self) -> AlertSink:
        if self.type == "webhook" and not (self.url or "").startswith(("http://", "https://")):
            raise ValueError("a webhook sink needs url: http(s)://...")
        if self.type == "jsonl" and not self.path:
            raise ValueError("a jsonl sink needs path: FILE")
        return self


class RetrainConfig(_Strict):
    """Continuous training: which alerts start a new ``keel run``."""

    severities: list[Literal["info", "warning", "critical"]] = Field(
        default_factory=lambda: ["critical"]
    )
    include_production_rows: bool = True  # labelled rows of the prediction log


class MonitoringConfig(_Strict):
    """How `keel monitor` windows the prediction log and when it alerts: ``monitoring:``."""

    # windows: "hour", "day", or a row count (consecutive windows of that many rows)
    window: str | int = "day"
    min_rows: int = Field(30, ge=1)  # smaller windows are reported, not judged
    alpha: float = Field(0.05, gt=0.0, lt=1.0)
    correction: Literal["none", "bonferroni", "holm"] = "holm"
    dataset_share: float = Field(0.5, ge=0.0, le=1.0)
    psi: float = Field(0.2, gt=0.0)
    alerts: list[AlertRule] = Field(
        default_factory=lambda: [
            AlertRule(metric="dataset_drift", severity="critical"),
            AlertRule(metric="prediction_drift", severity="warning"),
        ]
    )
    sinks: list[AlertSink] = Field(
        default_factory=lambda: [
            AlertSink(type="log"),
            AlertSink(type="jsonl", path=".keel/alerts.jsonl"),
        ]
    )
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)

    @field_validator("window")
    @classmethod
    def _window(cls, value: str | int) -> str | int:
        return check_window(value)


def check_window(value: str | int) -> str | int:
    """``hour``, ``day`` or a positive row count (also given as a digit string)."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ValueError("a window of rows needs at least 1 row")
        return value
    if value not in ("hour", "day"):
        raise ValueError(f"window must be hour, day or a row count, not {value!r}")
    return value


PiiAction = Literal["redact", "mask", "hash", "drop"]


class PiiConfig(_Strict):
    """What to do with personal data: ``pii: {columns: {text: redact}, scan: true}``."""

    columns: dict[str, PiiAction] = Field(default_factory=dict)
    scan: bool = True
    threshold: float = Field(0.4, gt=0.0, le=1.0)


class GuardrailsConfig(_Strict):
    """Rules on questions and answers of a retrieval model: ``retrieval.guardrails:``.

    ``block`` stops the request with the rule and the reason in the answer; ``flag``
    answers and reports the failed rule; ``redact`` rewrites personal data (presidio).
    """

    max_query_chars: int = Field(1000, ge=10, le=100_000)
    injection: Literal["block", "flag", "off"] = "block"
    query_pii: Literal["redact", "block", "off"] = "redact"
    answer_pii: Literal["redact", "block", "off"] = "redact"
    citations: Literal["block", "flag", "off"] = "block"
    grounded: Literal["block", "flag", "off"] = "flag"
    min_grounding: float = Field(0.6, ge=0.0, le=1.0)
    # the robustness gate: share of held-out attack prompts that must be blocked
    min_block_rate: float = Field(0.8, ge=0.0, le=1.0)


class GeneratorConfig(_Strict):
    """An OpenAI-compatible chat endpoint that writes answers: ``retrieval.generator:``.

    ``url`` is the API base (``http://127.0.0.1:8080/v1`` for llama.cpp's server, vLLM,
    Ollama's ``/v1``); the key, if any, is read from the environment variable named by
    ``api_key_env`` (never from keel.yaml). ``judge: true`` also asks it whether each
    answer is supported by its passages (faithfulness, labelled as judged by the model).
    """

    url: str = Field(min_length=8, max_length=500)
    model: str = Field(min_length=1, max_length=200)
    api_key_env: str | None = Field(None, pattern=r"^[A-Z_][A-Z0-9_]{0,99}$")
    timeout_seconds: float = Field(30.0, gt=0.0, le=600.0)
    max_tokens: int = Field(300, ge=16, le=8192)
    judge: bool = False

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http(s) URL of an OpenAI-compatible API, got {value!r}")
        return value.rstrip("/")


class RetrievalConfig(_Strict):
    """How a retrieval model is built: ``retrieval:`` in keel.yaml (``task: retrieval``)."""

    chunk_sizes: list[int] = Field(default_factory=lambda: [64, 128, 256])
    chunk_overlap: float = Field(0.25, ge=0.0, lt=0.9)  # share of a chunk repeated in the next
    k: list[int] = Field(default_factory=lambda: [1, 3, 5, 10])
    test_share: float = Field(0.5, gt=0.0, lt=1.0)  # labelled queries held out for test
    passages: list[int] = Field(default_factory=lambda: [1, 3, 5])  # tuned: chunks per answer
    sentences: int = Field(2, ge=1, le=10)
    min_support: float = Field(0.34, ge=0.0, le=1.0)  # tuned with 0.2, 0.5 and 0.67
    # distinct content terms of the question an answer's sentence must share (one shared
    # word is not support: docs/retrieval.md)
    min_terms: int = Field(2, ge=1, le=10)
    pii: Literal["redact", "mask", "hash", "none"] = "redact"
    pii_entities: list[str] | None = None  # default: keel.data CORPUS_ENTITIES
    max_document_chars: int = Field(2_000_000, ge=100, le=50_000_000)
    sections: bool = False  # every "## " section of a Markdown file is a document
    guardrails: GuardrailsConfig = Field(default_factory=GuardrailsConfig)
    generator: GeneratorConfig | None = None
    prompt_template: str | None = Field(None, min_length=20, max_length=20_000)
    cache_size: int = Field(1024, ge=0, le=1_000_000)
    near_duplicate: float = Field(0.95, gt=0.5, le=1.0)  # cosine of two cached questions

    @field_validator("chunk_sizes", "passages", "k")
    @classmethod
    def _positive_list(cls, value: list[int]) -> list[int]:
        if not value or any(v < 1 or v > 5000 for v in value):
            raise ValueError(f"must list numbers between 1 and 5000, got {value}")
        return sorted(set(value))

    @field_validator("chunk_sizes")
    @classmethod
    def _chunk_words(cls, value: list[int]) -> list[int]:
        if min(value) < 8:
            raise ValueError(f"chunks need at least 8 words, got {min(value)}")
        return value

    @field_validator("prompt_template")
    @classmethod
    def _placeholders(cls, value: str | None) -> str | None:
        if value is not None:
            missing = [p for p in ("{passages}", "{question}") if p not in value]
            if missing:
                raise ValueError(f"must hold {' and '.join(missing)} (where they go)")
        return value


class TuningConfig(_Strict):
    """Where tuning runs: ``tuning:`` in keel.yaml (in process unless a Ray cluster is named).

    With ``ray_address`` (``HOST:PORT`` of a running cluster) each trial's folds are
    fitted as Ray tasks; Optuna still asks for one trial at a time, so a fixed
    ``trials:`` and ``seed:`` give the same result as in process.
    """

    ray_address: str | None = None

    @field_validator("ray_address")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is None:
            return value
        host, _, port = value.removeprefix("ray://").rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"must be HOST:PORT of a Ray cluster, not {value!r}")
        return value


class EnsembleConfig(_Strict):
    """How the ``ensemble`` candidate is built: ``ensemble:`` in keel.yaml.

    Greedy ensemble selection with replacement (Caruana et al., 2004) over the
    out-of-fold predictions of the ``top_trials`` best tuning trials of every tuned
    candidate, for ``rounds`` rounds; the weights are how often each was picked.
    """

    top_trials: int = Field(3, ge=1, le=10)
    rounds: int = Field(25, ge=1, le=500)


class ProjectConfig(_Strict):
    """A Keel project, as written in ``keel.yaml``.

    Only ``name``, ``data`` and ``target`` are required; everything else has a
    default and ``task`` is inferred from the target when absent.
    """

    name: str
    data: DataSpec
    target: str | None = None
    # any task a family declares (the built-ins: TaskType; a plug-in family adds its own)
    task: str | None = None
    sensitive_features: list[str] = Field(default_factory=list)
    ignore_columns: list[str] = Field(default_factory=list)
    positive_class: str | int | None = None
    metric: str | None = None
    threshold_objective: Literal["f1", "balanced_accuracy", "accuracy", "none"] = "f1"
    final_fit: Literal["train_and_validation", "all_rows"] = "train_and_validation"
    seed: int = Field(42, ge=0, le=2**32 - 1)
    split: SplitConfig = Field(default_factory=SplitConfig)
    candidates: list[ModelName] = Field(default_factory=lambda: ["lightgbm"])
    budget: float = Field(60.0, ge=0.0, le=86_400.0)
    trials: int | None = Field(None, ge=0, le=10_000)
    cv_folds: int = Field(5, ge=2, le=20)
    gate_margin: float = Field(0.0, ge=0.0)
    time_column: str | None = None
    group_column: str | None = None
    leakage_threshold: float = Field(0.99, gt=0.5, le=1.0)
    pii: PiiConfig = Field(default_factory=PiiConfig)
    behaviour: list[BehaviourTest] = Field(default_factory=list)
    fairness: FairnessConfig = Field(default_factory=FairnessConfig)
    card: CardConfig = Field(default_factory=CardConfig)
    features: dict[str, str] = Field(default_factory=dict)  # name → what it means
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    robustness: RobustnessConfig = Field(default_factory=RobustnessConfig)
    release: ReleaseConfig = Field(default_factory=ReleaseConfig)
    gates: GatesConfig = Field(default_factory=GatesConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    tuning: TuningConfig = Field(default_factory=TuningConfig)
    ensemble: EnsembleConfig = Field(default_factory=EnsembleConfig)
    tracking_uri: str | None = None
    schema_file: str | None = Field(None, alias="schema")
    # recommendation: interactions of users with items (task: recommendation)
    user_column: str | None = None
    item_column: str | None = None
    rating_column: str | None = None
    relevant_from: float | None = None  # a rating of this or more is relevant
    users: DataSpec | None = None  # one row per user: sensitive features such as age
    items: DataSpec | None = None  # one row per item: attributes such as genre
    item_attribute: str | None = None  # an items column: diversity and exposure groups
    attribute_separator: str = Field("|", min_length=1, max_length=5)
    k: list[int] = Field(default_factory=lambda: list(DEFAULT_K))
    # retrieval: a corpus (folder or table) and labelled questions (task: retrieval)
    queries: str | None = None  # JSONL/CSV: query, relevant (document ids), answer
    text_column: str | None = None  # a table corpus: the text of each document
    id_column: str | None = None  # …its document id (default: row-N)
    title_column: str | None = None
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    # a plug-in family's own section (its ``config_section`` key, validated by the family)
    family_section: Any = Field(None, exclude=True)

    _root: Path = PrivateAttr(default_factory=Path.cwd)
    _source: Path | None = PrivateAttr(default=None)

    @field_validator("name")
    @classmethod
    def _name_is_a_model_name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError(
                "must start with a letter or digit and use only letters, digits, '_', '.', '-'"
                f" (at most 100 characters), got {value!r}"
            )
        return value

    @field_validator("users", "items")
    @classmethod
    def _data_has_known_suffix(cls, value: Any) -> Any:
        return _check_suffix(value) if isinstance(value, str) else value

    @field_validator("k")
    @classmethod
    def _cut_offs(cls, value: list[int]) -> list[int]:
        if not value or any(k < 1 or k > 1000 for k in value):
            raise ValueError(f"must list cut-offs between 1 and 1000, got {value}")
        return sorted(set(value))

    @model_validator(mode="before")
    @classmethod
    def _family_defaults(cls, data: Any) -> Any:
        """The defaults of the task's family (its candidates, its split) where unset."""
        from keel.errors import ConfigError
        from keel.families import FAMILIES

        if not isinstance(data, dict):
            return data
        try:
            family = FAMILIES.for_task(data.get("task"))
        except ConfigError:  # an unknown task: the field's own check names it
            return data
        return _with_section(family, family.config_defaults(dict(data)))

    @field_validator("task")
    @classmethod
    def _task_of_a_family(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from keel.errors import ConfigError
        from keel.families import FAMILIES

        try:
            family = FAMILIES.for_task(value)
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("keel.yaml: key 'task': ")) from None
        why = family.missing_extra(subject=f"got {value!r}, which")
        if why:
            raise ValueError(why)
        return value

    @field_validator("candidates")
    @classmethod
    def _candidates_not_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError(f"must list at least one of {', '.join(CANDIDATES)}")
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _roles_do_not_clash(self) -> ProjectConfig:
        from keel.families import FAMILIES

        family = FAMILIES.for_task(self.task)
        if self.behaviour and not family.capabilities.has_target:
            raise ValueError(
                f"key 'behaviour': behaviour tests change features of rows and watch the"
                f" score; a {family.name} model (task: {self.task}) has no rows of features"
                " to test: remove the key (its package checks run at registration)"
            )
        if isinstance(self.data, str) and not family.capabilities.reads_folders:
            try:
                _check_suffix(self.data)
            except ValueError as exc:
                raise ValueError(f"key 'data': {exc}") from None
        for other in FAMILIES.usable():
            misplaced = [
                k for k in other.config_keys if other is not family and getattr(self, k) is not None
            ]
            if misplaced:
                raise ValueError(
                    f"{', '.join(misplaced)} {'is' if len(misplaced) == 1 else 'are'} for"
                    f" task: {other.tasks[0]}; set task: {other.tasks[0]} or remove them"
                )
        family.check_config(self)
        return self

    @model_serializer(mode="wrap")
    def _section_under_its_key(self, handler: Any) -> dict[str, Any]:
        dumped = handler(self)
        if self.family_section is not None:
            from keel.families import FAMILIES

            key = FAMILIES.for_task(self.task).config_section
            dumped[key] = self.family_section.model_dump(mode="json")
        return dumped

    @property
    def section(self) -> Any:
        """The family's own keel.yaml section, validated (``None`` when it has none)."""
        return self.family_section

    @property
    def models(self) -> list[str]:
        """Every model a run trains: the baselines, always, then the candidates."""
        from keel.families import FAMILIES

        baselines = FAMILIES.for_task(self.task).baselines
        return list(dict.fromkeys([*baselines, *self.candidates]))

    @property
    def excluded_columns(self) -> list[str]:
        """Columns never used as features: ignored ones, the time and group columns."""
        extra = [c for c in (self.time_column, self.group_column) if c]
        return list(dict.fromkeys([*self.ignore_columns, *extra, *self.pii.columns]))

    # -- resolved locations -------------------------------------------------------------

    @property
    def root(self) -> Path:
        """Folder the config lives in; relative paths resolve against it."""
        return self._root

    @property
    def source(self) -> Path | None:
        """The ``keel.yaml`` file this config was read from, if any."""
        return self._source

    @property
    def data_path(self) -> Path | None:
        """Absolute path of the data file (``None`` for SQL and DVC sources)."""
        if not isinstance(self.data, str):
            return None
        path = Path(self.data).expanduser()
        return path if path.is_absolute() else (self.root / path).resolve()

    @property
    def data_label(self) -> str:
        """A short name of the data source for messages."""
        if isinstance(self.data, SqlSource):
            return "the SQL query"
        if isinstance(self.data, DvcSource):
            return f"{self.data.dvc}@{self.data.rev or 'workspace'}"
        return self.data

    def table_path(self, spec: Any) -> Path | None:
        """Absolute path of a file source (``users:``, ``items:``); None for SQL/DVC."""
        if not isinstance(spec, str):
            return None
        path = Path(spec).expanduser()
        return path if path.is_absolute() else (self.root / path).resolve()

    @property
    def schema_path(self) -> Path | None:
        """Absolute path of the hand-edited schema file, if one is configured."""
        if self.schema_file is None:
            return None
        path = Path(self.schema_file).expanduser()
        return path if path.is_absolute() else (self.root / path).resolve()

    @property
    def keel_dir(self) -> Path:
        """Where Keel keeps its state for this project (``.keel/``)."""
        return self.root / ".keel"

    def with_root(self, root: Path, source: Path | None = None) -> ProjectConfig:
        """Return a copy whose relative paths resolve against ``root``."""
        clone = self.model_copy()
        clone._root = Path(root).resolve()
        clone._source = source
        return clone


def _with_section(family: Any, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with the family's own section validated into ``family_section``.

    The section's key is the family's ``config_section``; another family's section key
    is refused naming its task, and ``family_section`` is not a key users may write.
    """
    from pydantic import ValidationError

    from keel.families import FAMILIES

    if "family_section" in data:
        raise ValueError("unknown key 'family_section' (a family's settings go under its own key)")
    for other in FAMILIES.usable():
        key = other.config_section
        if key and other is not family and key in data and key not in ProjectConfig.model_fields:
            raise ValueError(
                f"key {key!r} is for task: {other.tasks[0]}; set task: {other.tasks[0]} or"
                " remove it"
            )
    key = family.config_section
    if not key:
        return data
    model = family.section_model()
    raw = data.pop(key, None)
    try:
        data["family_section"] = model.model_validate({} if raw is None else raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in (key, *first.get("loc", ())))
        msg = first.get("msg", "invalid value").removeprefix("Value error, ")
        if first.get("type") == "extra_forbidden":
            allowed = ", ".join(model.model_fields)
            raise ValueError(f"unknown key '{where}'; allowed keys: {allowed}") from None
        received = first.get("input")
        shown = "" if isinstance(received, dict) else f", got {received!r}"
        raise ValueError(f"key '{where}': {msg}{shown}") from None
    return data
