"""PII: find personal data in text columns with presidio and keep it out of everything.

presidio runs offline on its pattern recognizers (email, phone, credit card, IBAN, IP,
URL, US SSN, plus Keel's social-media handle) over a blank spaCy pipeline; NER
entities (PERSON, LOCATION) are added only when a spaCy English model happens to be
installed. Nothing is downloaded.

Columns with a configured action are rewritten (``redact``: ``<EMAIL_ADDRESS>``,
``mask``: ``*****``, ``hash``: SHA-256 of the entity, ``drop``: the column goes) before
anything is stored, and never used as model features. Other free-text columns are
scanned on a sample; PII found there stops the run until the config says what to do.
Reports hold counts of entity types only, never the values.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from keel.errors import DataError

ACTIONS: tuple[str, ...] = ("redact", "mask", "hash", "drop")
PATTERN_ENTITIES: tuple[str, ...] = (
    "SOCIAL_HANDLE",
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "IP_ADDRESS",
    "URL",
    "US_SSN",
)
NER_ENTITIES: tuple[str, ...] = ("PERSON", "LOCATION")
NER_MODELS: tuple[str, ...] = ("en_core_web_sm", "en_core_web_md", "en_core_web_lg")
SCAN_SAMPLE = 300
DEFAULT_THRESHOLD = 0.4


@dataclass
class PiiReport:
    """What was found and done, per column: entity counts only, never values."""

    columns: dict[str, dict[str, Any]] = field(default_factory=dict)
    engine: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``pii.json``)."""
        return {"engine": self.engine, "columns": self.columns}


class PiiScanner:
    """presidio analyzer + anonymizer, built once, offline."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD) -> None:
        self.threshold = threshold
        self._analyzer, self._anonymizer, self.entities, self.engine = _engines()

    def find(self, text: str) -> list[Any]:
        """Presidio results for ``text`` above the threshold, overlaps resolved."""
        results = self._analyzer.analyze(
            text=text, language="en", entities=list(self.entities), score_threshold=self.threshold
        )
        # keep the strongest of overlapping findings (an e-mail also looks like a URL)
        kept: list[Any] = []
        for result in sorted(results, key=lambda r: (-r.score, r.start - r.end)):
            if all(result.end <= k.start or result.start >= k.end for k in kept):
                kept.append(result)
        return sorted(kept, key=lambda r: r.start)

    def anonymize(self, text: str, action: str) -> tuple[str, list[str]]:
        """``text`` with every entity replaced as ``action`` says, and the entity types."""
        from presidio_anonymizer.entities import OperatorConfig

        results = self.find(text)
        if not results:
            return text, []
        if action == "mask":
            operator = OperatorConfig(
                "mask", {"masking_char": "*", "chars_to_mask": 10_000, "from_end": False}
            )
        elif action == "hash":
            operator = OperatorConfig("custom", {"lambda": _sha256})
        else:
            operator = OperatorConfig("replace")
        done = self._anonymizer.anonymize(
            text=text, analyzer_results=results, operators={"DEFAULT": operator}
        )
        return done.text, [r.entity_type for r in results]


def pii_finder(entities: tuple[str, ...] = (), threshold: float = DEFAULT_THRESHOLD) -> Any:
    """``find(text) -> [(start, end, entity)]`` over ``entities`` (all known when empty)."""
    scanner = PiiScanner(threshold)
    if entities:
        scanner.entities = tuple(e for e in scanner.entities if e in entities)
    return lambda text: [(r.start, r.end, r.entity_type) for r in scanner.find(text)]


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:16]


@functools.cache
def _engines() -> tuple[Any, Any, tuple[str, ...], str]:
    try:
        import spacy
        from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry
        from presidio_analyzer.nlp_engine import SpacyNlpEngine
        from presidio_analyzer.predefined_recognizers.generic import email_recognizer
        from presidio_anonymizer import AnonymizerEngine
    except ModuleNotFoundError as exc:
        raise DataError(
            f"PII scanning needs presidio ({exc.name} is missing);"
            " it is part of Keel's core: reinstall it with `pip install keel-ml`"
        ) from exc
    import tldextract

    # presidio's e-mail check asks tldextract for the public-suffix list online by
    # default; the snapshot bundled with tldextract is used instead.
    email_recognizer.tldextract = _OfflineTld(tldextract.TLDExtract(suffix_list_urls=()))
    nlp, engine_name, entities = None, "presidio patterns (blank spaCy)", PATTERN_ENTITIES
    for model in NER_MODELS:
        try:
            nlp = spacy.load(model)
        except OSError:
            continue
        engine_name, entities = (
            f"presidio patterns + NER ({model})",
            PATTERN_ENTITIES + NER_ENTITIES,
        )
        break

    class _LocalSpacy(SpacyNlpEngine):
        def load(self) -> None:
            self.nlp = {"en": nlp if nlp is not None else spacy.blank("en")}

    nlp_engine = _LocalSpacy(models=[{"lang_code": "en", "model_name": "local"}])
    nlp_engine.load()
    registry = RecognizerRegistry()
    quiet = logging.getLogger("presidio-analyzer")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # it lists every recognizer of other languages it skips
    try:
        registry.load_predefined_recognizers(languages=["en"], nlp_engine=nlp_engine)
    finally:
        quiet.setLevel(level)
    # Truncated links ("http://bi…") are still links: presidio's URL recognizer needs
    # a complete host name.
    registry.add_recognizer(
        PatternRecognizer(
            supported_entity="URL",
            patterns=[Pattern("scheme and anything", r"\bhttps?://\S*", 0.5)],
            name="PartialUrlRecognizer",
        )
    )
    registry.add_recognizer(
        PatternRecognizer(
            supported_entity="SOCIAL_HANDLE",
            patterns=[Pattern("handle", r"(?<![\w@.])@[A-Za-z0-9_]{2,30}\b", 0.6)],
            name="SocialHandleRecognizer",
        )
    )
    analyzer = AnalyzerEngine(nlp_engine=nlp_engine, registry=registry, supported_languages=["en"])
    return analyzer, AnonymizerEngine(), entities, engine_name


class _OfflineTld:
    def __init__(self, extractor: Any) -> None:
        self.extract = extractor


def text_columns(frame: pd.DataFrame, max_categories: int = 50) -> list[str]:
    """String columns that look like free text or identifiers (too many values to be categories)."""
    found = []
    for name in frame.columns:
        series = frame[name]
        if not (pd.api.types.is_string_dtype(series) or series.dtype == object):
            continue
        values = series.dropna()
        if not len(values) or not values.map(lambda v: isinstance(v, str)).all():
            continue
        if values.nunique() <= max_categories or _looks_like_timestamps(values):
            continue
        found.append(str(name))
    return found


def _looks_like_timestamps(values: pd.Series) -> bool:
    sample = values.head(200)
    parsed = pd.to_datetime(sample, errors="coerce", format="mixed")
    return bool(parsed.notna().mean() > 0.95)


def protect(
    frame: pd.DataFrame,
    actions: dict[str, str],
    scan: bool = True,
    threshold: float = DEFAULT_THRESHOLD,
) -> tuple[pd.DataFrame, PiiReport]:
    """Apply the configured PII actions and scan the other text columns.

    Returns a new frame (the input is not modified) and the report.

    Raises
    ------
    DataError
        When a configured column does not exist, or PII is found in a text column
        that has no action configured.
    """
    for column, action in actions.items():
        if column not in frame.columns:
            raise DataError(f"key 'pii.columns': {column!r} is not a column of the data")
        if action not in ACTIONS:
            raise DataError(f"key 'pii.columns.{column}': action must be one of {ACTIONS}")
    others = [c for c in text_columns(frame) if c not in actions] if scan else []
    if not actions and not others:
        return frame, PiiReport(engine="not needed: no free-text columns")
    scanner = PiiScanner(threshold)
    report = PiiReport(engine=scanner.engine)
    for column in others:
        sample = frame[column].dropna().astype(str)
        sample = sample.sample(min(SCAN_SAMPLE, len(sample)), random_state=0)
        counts: Counter[str] = Counter()
        rows = 0
        for text in sample:
            entities = {r.entity_type for r in scanner.find(text)}
            rows += bool(entities)
            counts.update(entities)
        report.columns[column] = {
            "action": None,
            "scanned_rows": len(sample),
            "rows_with_pii": rows,
            "entities": dict(counts),
        }
        if rows:
            kinds = ", ".join(f"{k} ({n})" for k, n in counts.most_common())
            raise DataError(
                f"column {column!r} holds personal data: {kinds} in {rows} of {len(sample)}"
                f" sampled rows. Say what to do with it in keel.yaml, e.g. pii: {{columns:"
                f" {{{column}: redact}}}} (one of {', '.join(ACTIONS)})"
            )
    out = frame.copy()
    for column, action in actions.items():
        if action == "drop":
            out = out.drop(columns=[column])
            report.columns[column] = {"action": "drop"}
            continue
        counts = Counter()
        rows = 0
        values = out[column].tolist()
        for i, value in enumerate(values):
            if isinstance(value, str) and value:
                values[i], entities = scanner.anonymize(value, action)
                rows += bool(entities)
                counts.update(entities)
        out[column] = pd.Series(values, index=out.index, dtype=object)
        report.columns[column] = {
            "action": action,
            "rows_with_pii": rows,
            "entities": dict(counts),
        }
    return out, report
