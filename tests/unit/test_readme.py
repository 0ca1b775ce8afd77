"""The front page: one sentence, the install line, the two commands, every link resolves."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def github_anchor(heading: str) -> str:
    """The fragment GitHub gives a Markdown heading: lower case, punctuation dropped."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)  # keeps letters, digits, '_', '-', spaces
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    headings = re.findall(r"^#+ (.+)$", path.read_text(), re.M)
    return {github_anchor(h) for h in headings}


def test_the_anchor_rule_matches_githubs_on_known_headings() -> None:
    assert github_anchor("Stage reuse (`bench/results/stages.json`, 2 cores)") == (
        "stage-reuse-benchresultsstagesjson-2-cores"
    )
    assert github_anchor("Serving (`bench/results/serving.json`, 2 cores) — `make bench`") == (
        "serving-benchresultsservingjson-2-cores--make-bench"
    )


def test_the_front_page_opens_with_a_sentence_the_install_line_and_two_commands() -> None:
    intro = README.split("\n## ", 1)[0]
    first_paragraph = intro.split("\n\n")[1]
    assert first_paragraph.count(". ") == 0 and len(first_paragraph.splitlines()) <= 4
    assert "pip install keel-ml" in intro
    assert "make demo" in intro and "make test" in intro
    for family in ("tabular model", "recommender", "retrieval"):
        assert re.search(rf"^## Quickstart: .*{family}", README, re.M | re.I), family


def test_every_relative_link_of_the_readme_resolves() -> None:
    links = re.findall(r"\]\(([^)#]+\.md)?(#[^)]+)?\)", README)
    assert len(links) > 20
    checked = 0
    for path, anchor in links:
        if not path and not anchor:
            continue
        target = ROOT / (path or "README.md")
        assert target.is_file(), path
        if anchor:
            assert anchor[1:] in _anchors(target), f"{path}{anchor}: no such heading"
            checked += 1
    assert checked >= 10  # the comparison table links each claim to its benchmark
