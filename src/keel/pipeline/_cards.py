"""`keel card`: the model card and datasheet of any registered version, rebuilt from its run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from keel.errors import DataError
from keel.families import FAMILIES
from keel.registry import experiment_summaries, version_documents
from keel.reports import RunReport, write_card

_DOCUMENTS = ("reports/report.json", "keel.yaml", "profile.json")


def write_model_card(uri: str, tracking_uri: str, out: Path | None, root: Path) -> dict[str, str]:
    """Write the card files of ``uri`` (``NAME[@ALIAS|/VERSION]``) and return their paths.

    Everything comes from the registry and the version's run (its report, the
    ``keel.yaml`` it ran with, its training profile); aliases and the registration date
    are read now, so a card written after a promotion shows the current aliases.
    ``out`` defaults to ``ROOT/.keel/cards/NAME-vVERSION``.
    """
    info, documents = version_documents(uri, tracking_uri, _DOCUMENTS)
    document = documents.get("reports/report.json")
    if document is None:
        raise DataError(
            f"{info['name']} version {info['version']} has no reports/report.json on its run"
            f" {info['run_id']}; it was not registered by `keel run` (or its artifacts are gone)"
        )
    loadtest = _loadtest(info)
    info["ab_tests"] = experiment_summaries(info.get("tags") or {})
    config = documents.get("keel.yaml") or {}
    family = FAMILIES.of_metadata(document)  # the report's own record of its task
    folder = out or root / ".keel" / "cards" / f"{info['name']}-v{info['version']}"
    return family.write_card(
        document, info, {"loadtest": loadtest, "config": config, "documents": documents}, folder
    )


def write_tabular_card(document: dict, info: dict, extra: dict, folder: Path) -> dict[str, str]:
    """A tabular model's card and datasheet, from its run report."""
    report = RunReport.from_dict(
        document, origin=f"reports/report.json of {info['name']} version {info['version']}"
    )
    config = extra["config"]
    return write_card(
        report,
        config.get("card") or {},
        info,
        extra["documents"].get("profile.json"),
        folder,
        extra["loadtest"],
        config=config,
    )


def _loadtest(info: dict) -> dict | None:
    raw = (info.get("tags") or {}).get("keel.loadtest")
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def write_sections_card(
    document: dict,
    info: dict,
    extra: dict,
    folder: Path,
    card_sections: Callable[[dict], list],
    write_governance: Callable[..., dict[str, str]],
) -> dict[str, str]:
    """A card from a family's ``card_sections`` and its governance documents.

    The latency ``keel loadtest`` recorded on the version goes on the card; the family's
    ``write_governance`` writes its runbook and impact assessment beside it.
    """
    from keel.reports._card import render_html, render_markdown
    from keel.reports._pages import atomic_write

    loadtest, config = extra["loadtest"], extra["config"]

    doc = dict(document)
    if loadtest:
        doc["serving_latency"] = {
            "p95_ms": loadtest["p95_ms"],
            "concurrency": loadtest["concurrency"],
            "requests": loadtest["requests"],
        }
    doc["aliases"] = info.get("aliases", [])
    doc["semver"] = info.get("semver") or doc.get("semver")
    doc["ab_tests"] = info.get("ab_tests")
    title = f"Model card: {info['name']} version {info['version']}"
    sections = card_sections(doc)
    paths = {
        "model_card_md": folder / "model_card.md",
        "model_card_html": folder / "model_card.html",
    }
    atomic_write(paths["model_card_md"], render_markdown(title, sections))
    atomic_write(paths["model_card_html"], render_html(title, sections))
    governance = write_governance(
        doc,
        {**config, "card": doc.get("card") or config.get("card") or {}},
        folder,
        {
            "aliases": info.get("aliases", []),
            "created": info.get("created"),
            "tracking_uri": info.get("tracking_uri"),
            "semver": info.get("semver") or doc.get("semver"),
        },
    )
    return {**{k: str(v) for k, v in paths.items()}, **governance}
