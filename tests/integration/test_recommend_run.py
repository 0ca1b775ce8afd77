"""`keel run` on a recommender: MovieLens users end to end, against a real MLflow store."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import keel_in, movielens_project

CANDIDATES = ["item_knn", "ease", "als", "bpr"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("movielens")
    movielens_project(root, users=300)
    done = keel_in(root, "run", "--json")
    assert done.exit_code == 0, done.output
    return root, json.loads(done.stdout)


def test_every_model_is_evaluated_on_the_full_ranking(trained):
    _, out = trained
    assert out["task"] == "recommendation" and out["primary_metric"] == "ndcg_at_10"
    names = [c["name"] for c in out["candidates"]]
    assert names == ["random", "popularity", "recent_popularity", *CANDIDATES]
    for c in out["candidates"]:
        for key in ("test", "test_warm", "test_cold", "validation"):
            assert {"ndcg_at_10", "map_at_10", "mrr", "recall_at_10", "hit_rate_at_20"} <= set(
                c[key]
            )
    chosen = out["model"]["candidate"]
    assert chosen in CANDIDATES
    assert out["metrics"] == next(c["test"] for c in out["candidates"] if c["name"] == chosen)
    gate = out["assessment"]["gate"]
    assert gate["baseline"] == "popularity" and gate["model"] == chosen
    interval = out["assessment"]["intervals"]["ndcg_at_10"]
    assert interval["low"] <= out["metrics"]["ndcg_at_10"] <= interval["high"]
    protocol = out["data"]["protocol"]
    assert protocol["strategy"] == "global_time" and protocol["cold_start_test_users"] > 0


def test_the_package_loads_with_plain_mlflow(trained):
    import mlflow

    from keel.errors import ModelNotFoundError
    from keel.registry import (
        load_package,
        mlflow_scope,  # sets MLflow's URIs, then restores them
    )

    root, out = trained
    with pytest.raises(ModelNotFoundError, match="is a recommendation model"):
        load_package(f"movielens/{out['model']['version']}", out["tracking_uri"])
    with mlflow_scope(out["tracking_uri"]) as client:
        model = mlflow.pyfunc.load_model(f"models:/movielens/{out['model']['version']}")
        run = client.get_run(client.get_model_version("movielens", out["model"]["version"]).run_id)
    from keel import __version__

    assert run.data.tags["keel.version"] == __version__  # every family's run records it
    users = pd.DataFrame({"user_id": ["1", "2", "no-such-user"]})
    lists = model.predict(users)
    assert list(lists.columns) == ["user_id", "rank", "item_id", "score", "cold_start"]
    assert lists.groupby("user_id").size().to_dict() == {"1": 10, "2": 10, "no-such-user": 10}
    assert lists[lists["user_id"] == "no-such-user"]["cold_start"].all()
    assert not lists[lists["user_id"] == "1"]["cold_start"].any()
    ratings = pd.read_csv(root / "data" / "ratings.csv")
    seen = set(ratings.loc[ratings["user_id"] == 1, "item_id"].astype(str))
    assert not seen & set(lists.loc[lists["user_id"] == "1", "item_id"])


def test_reports_and_card_hold_the_evidence(trained):
    _, out = trained
    reports = out["reports"]
    card = Path(reports["model_card_md"]).read_text()
    for words in (
        "NDCG",
        "ndcg_at_10",
        "map_at_10",
        "cold-start",
        "A/B test results",
        "not run yet",
        "By gender",
        "Exposure by popularity",
        "Exposure by genre",
        "New users (cold start) get the popularity list",
        "keel rollback movielens",
    ):
        assert words in card, words
    page = Path(reports["html"]).read_text()
    assert "<svg" in page and "Warm users" in page and "because of" in page
    validation = Path(reports["validation"]).read_text()
    assert "duplicates dropped" in validation and "long tail" in validation
    document = json.loads(Path(reports["json"]).read_text())
    assert document["fairness"]["features"]["history"]["groups"]
    assert document["semver"] == "1.0.0"
    attack = document["robustness"]["shilling"]
    assert attack["fake_users"] == 3  # 1% of 300 users
    assert 0.0 <= attack["exposure_before"] <= 1.0 and 0.0 <= attack["exposure_after"] <= 1.0
    assert attack["gain"] == pytest.approx(attack["exposure_after"] - attack["exposure_before"])
    assert document["gates"]["robustness"] == "not judged"
    assert "fake users" in card and "## Robustness" in card
    assert {r["stage"] for r in document["resources"]} >= {"tune", "train", "evaluate"}


def test_runbook_and_impact_assessment_beside_the_card(trained):
    root, out = trained
    runbook = Path(out["reports"]["runbook_md"]).read_text()
    for words in (
        "keel serve --model movielens@champion",
        "keel rollback movielens",
        "POST | /recommend | predict",
        "dataset_drift",
        "pipeline failure",
        "Not stated: set card.contacts",
        "keel forget --subject ID",
        "Retirement policy",
    ):
        assert words in runbook, words
    sheet = Path(out["reports"]["datasheet_md"]).read_text()
    assert "| user_id |  | user id |" in sheet and "## Data use" in sheet
    assert "not described (features.user_id in keel.yaml)" in sheet
    impact = Path(out["reports"]["impact_assessment_md"]).read_text()
    assert "New users (cold start) get the popularity list" in impact
    assert "Not stated: set card.misuses" in impact
    # `keel card` rebuilds them from the registry, beside the card
    done = keel_in(root, "card", f"movielens/{out['model']['version']}", "--json")
    assert done.exit_code == 0, done.output
    written = json.loads(done.stdout)["paths"]
    assert Path(written["runbook_html"]).read_text().count("<table") >= 2


def test_an_identical_rerun_reuses_every_stage(trained):
    root, out = trained
    again = keel_in(root, "run", "--json")
    assert again.exit_code == 0, again.output
    second = json.loads(again.stdout)
    assert second["model"]["version"] == out["model"]["version"]
    assert {s["status"] for s in second["stages"]} == {"reused"}
    table = keel_in(root, "run")  # people get tables
    assert table.exit_code == 0, table.output
    assert "Every model on the full ranking" in table.output and "cold" in table.output


def test_keel_reproduce_gives_every_metric_again(trained):
    root, out = trained
    done = keel_in(root, "reproduce", out["run_id"], "--json")
    assert done.exit_code == 0, done.output
    again = json.loads(done.stdout)
    assert again["identical"], again["differences"]
    assert again["compared"] >= 48  # all, warm, cold users at 3 cut-offs, and beyond
    assert again["candidate"]["recorded"] == again["candidate"]["reproduced"]


def test_a_fairness_limit_withholds_the_alias(tmp_path):
    config = movielens_project(tmp_path, users=120, candidates=["ease"], trials=1)
    loaded = yaml.safe_load(config.read_text())
    loaded["fairness"] |= {"max_ndcg_difference": 0.0001, "min_group_size": 5}
    config.write_text(yaml.safe_dump(loaded))
    done = keel_in(tmp_path, "run", "--json")
    assert done.exit_code == 1, done.output
    out = json.loads(done.stdout)
    assert out["model"]["alias"] is None and out["assessment"]["gates"]["fairness"] == "failed"
    assert "fairness gate failed" in done.output


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"user_column": "customer"}, "no column 'customer'"),
        (
            {"users": "data/items.csv", "pii": {"columns": {}}},
            "users table: no column 'user_id' to join on",
        ),
        ({"pii": {"columns": {"zipcode": "drop"}}}, "'zipcode' is not a column"),
        ({"split": {"strategy": "global_time", "test": 0.0001}}, "no test user"),
        (
            {"recommend": {"rules": {"never_where": {"colour": ["red"]}}}},
            "recommend.rules.never_where.colour: not an item attribute",
        ),
        ({"recommend": {"rules": {"cap": [{"where": {}, "at_most": 1}]}}}, "recommend.rules.cap"),
    ],
)
def test_bad_input_is_exit_2_and_writes_nothing(tmp_path, change, message):
    config = movielens_project(tmp_path, users=60)
    loaded = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**loaded, **change}))
    done = keel_in(tmp_path, "run", "--json")
    assert done.exit_code == 2, done.output
    assert message in done.output and "Traceback" not in done.output
    assert not (tmp_path / ".keel" / "mlflow.db").exists()


def test_a_new_version_meets_the_champion_on_the_same_test_users(trained):
    root, out = trained
    config = root / "keel.yaml"
    loaded = yaml.safe_load(config.read_text())
    loaded["card"]["intended_use"] = "The same model, registered again with other words."
    config.write_text(yaml.safe_dump(loaded))
    again = keel_in(root, "run", "--json")  # only the card changed: the same model
    assert again.exit_code == 0, again.output
    second = json.loads(again.stdout)
    assert second["model"]["version"] != out["model"]["version"]
    versus = second["assessment"]["versus_champion"]
    assert versus["champion"] == out["model"]["version"] and not versus["promote"]
    assert versus["difference"]["value"] == 0.0 and second["model"]["alias"] == "challenger"
    # a champion that learnt from this test period cannot be compared fairly
    loaded["split"] = {**loaded["split"], "strategy": "user_time"}
    config.write_text(yaml.safe_dump(loaded))
    third = json.loads(keel_in(root, "run", "--json").stdout)
    versus = third["assessment"]["versus_champion"]
    assert third["assessment"]["gates"]["baseline"] == "passed", third["assessment"]["gate"]
    assert not versus["promote"] and "no fair comparison" in versus["reason"]


def test_report_card_and_validation_page_render_in_a_real_browser(trained, browser):
    _, out = trained
    for key, words in (
        ("html", "Every model on test"),
        ("model_card_html", "A/B test results"),
        ("validation", "long tail"),
    ):
        page = browser(Path(out["reports"][key]))
        assert page.console == [] and page.requests == [], key
        assert words in page.dom and "<svg" in page.dom, key
        assert page.screenshot.stat().st_size > 10_000, key  # a picture, not a blank page


def test_forget_finds_a_user_in_the_snapshot_and_the_packages_user_group_map(trained):
    root, out = trained
    done = keel_in(root, "forget", "--subject", "1", "--json")
    assert done.exit_code == 0, done.output
    found = json.loads(done.stdout)
    holding = {v["version"]: v["held_in"] for v in found["versions_holding"]}
    where = " ".join(holding[out["model"]["version"]])
    assert "training snapshot" in where and "package user-group map" in where
    assert found["note"]["subject_column"] == "user_id"
    done = keel_in(root, "forget", "--subject", "no-such-user", "--json")
    assert json.loads(done.stdout)["versions_holding"] == []


def test_a_shilling_limit_withholds_the_alias(tmp_path):
    movielens_project(
        tmp_path,
        users=300,
        candidates=["item_knn"],
        robustness={"shilling_share": 0.3, "max_shilling_gain": 0.0},
    )
    done = keel_in(tmp_path, "run", "--json")
    assert done.exit_code == 0, done.output
    out = json.loads(done.stdout)
    document = json.loads(Path(out["reports"]["json"]).read_text())
    attack = document["robustness"]["shilling"]
    assert attack["gain"] > 0 and document["gates"]["robustness"] == "failed"
    assert out["model"]["alias"] is None
    check = json.loads(keel_in(tmp_path, "check", "movielens/1", "--json").stdout)
    gate = {g["gate"]: g for g in check["gates"]}["robustness"]
    assert gate["status"] == "fail" and "fake users" in gate["evidence"]


def test_rules_filters_segments_and_the_index_hold_end_to_end(tmp_path):
    """One run with every recommend: setting: rules, cold-start segments, an HNSW index."""
    section = {
        "rules": {
            "never": ["50"],
            "never_where": {"genre": ["Horror"]},
            "cap": [{"where": {"genre": ["Drama"]}, "at_most": 2}],
        },
        "cold_start": {"user_attributes": ["gender"], "min_users": 5},
        "ann": {"min_items": 100, "min_recall": 0.9},
    }
    movielens_project(tmp_path, users=200, candidates=["als"], trials=1)
    config = tmp_path / "keel.yaml"
    config.write_text(config.read_text() + yaml.safe_dump({"recommend": section}))
    done = keel_in(tmp_path, "run", "--json")
    assert done.exit_code in (0, 1), done.output  # 1: a gate's finding, not an error
    out = json.loads(done.stdout)
    model = f"movielens/{out['model']['version']}"
    report = json.loads(Path(out["reports"]["json"]).read_text())
    # the index: built, measured, used, shown
    ann = report["ann"]
    assert ann["used"] and ann["recall_at_10"] >= 0.9 and ann["items"] > 100
    html = Path(out["reports"]["html"]).read_text()
    assert "Approximate index (HNSW" in html and "recall@10 of the exact list" in html
    # cold start: the cold rows are the segmented ones, measured against the global list
    gain = report["cold_start"]
    assert gain["users"] == out["data"]["protocol"]["cold_start_test_users"] > 0
    assert gain["with_segment"] > 0 and gain["attributes"] == ["gender"]
    metric = gain["metric"]
    assert gain["gain"] == pytest.approx(
        gain["segment_popularity"][metric] - gain["global_popularity"][metric]
    )
    chosen = next(c for c in out["candidates"] if c["name"] == out["model"]["candidate"])
    assert chosen["test_cold"][metric] == pytest.approx(gain["segment_popularity"][metric])
    card = Path(out["reports"]["model_card_md"]).read_text()
    assert "popularity of their segment" in card and "global popularity" in card
    # the rules hold in the served (index) lists of known and new users
    items = pd.read_csv(tmp_path / "data" / "items.csv").set_index("item_id")
    genres = items["genre"].fillna("").str.split("|")
    users = tmp_path / "users.csv"
    pd.DataFrame({"user_id": [1, 2, 3, 4, 5, 999999]}).to_csv(users, index=False)
    plain = keel_in(tmp_path, "recommend", model, str(users), "out.csv", "--k", "8")
    assert plain.exit_code == 0, plain.output
    lists = pd.read_csv(tmp_path / "out.csv")
    assert lists.groupby("user_id").size().eq(8).all()
    assert 50 not in set(lists["item_id"])
    assert not any("Horror" in genres[i] for i in lists["item_id"])
    drama = lists["item_id"].map(lambda i: "Drama" in genres[i])
    assert drama.groupby(lists["user_id"]).sum().le(2).all()
    # filters in keel predict
    comedy = '{"where": {"genre": ["Comedy"]}}'
    narrowed = keel_in(tmp_path, "predict", model, str(users), "c.csv", "--filters", comedy)
    assert narrowed.exit_code == 0, narrowed.output
    lists = pd.read_csv(tmp_path / "c.csv")
    assert lists.groupby("user_id").size().eq(10).all()
    assert all("Comedy" in genres[i] for i in lists["item_id"])
    bad = keel_in(tmp_path, "recommend", model, str(users), "d.csv", "--filters", "{x")
    assert bad.exit_code == 2 and "--filters: not JSON" in bad.output
    assert not (tmp_path / "d.csv").exists()
    wrong = yaml.safe_load(config.read_text())
    wrong["recommend"]["cold_start"]["user_attributes"] = ["shoe_size"]
    config.write_text(yaml.safe_dump(wrong))
    refused = keel_in(tmp_path, "run")
    assert refused.exit_code == 2
    assert "'shoe_size' is not a column of the users table" in refused.output


def test_a_candidate_that_would_not_fit_is_skipped_with_its_estimate(tmp_path, monkeypatch):
    from keel.families.recommendation import estimate

    movielens_project(tmp_path, users=120, candidates=["ease", "als"], trials=1)
    items = pd.read_csv(tmp_path / "data" / "items.csv")
    shape = estimate.Shape(120, len(items), 10_000, 1e7)
    ease = estimate.estimate_fit("ease", {}, shape).bytes
    als = estimate.estimate_fit("als", {}, shape).bytes
    assert ease > als  # the test's premise: an items x items inverse is the big one
    # a machine with room for ALS and not for EASE (the kernel's answer, faked)
    monkeypatch.setattr(
        estimate, "available_bytes", lambda: (ease + als) / 2 / estimate.MEMORY_SHARE
    )
    done = keel_in(tmp_path, "run", "--json")
    assert done.exit_code in (0, 1), done.output  # 1: a gate's finding, not an error
    out = json.loads(done.stdout)
    assert out["model"]["candidate"] == "als"
    assert [c["name"] for c in out["candidates"]][-1] == "als"  # ease was never trained
    skipped = out["skipped"]["ease"]
    assert skipped["reason"].startswith("memory: needs about")
    assert "x" in skipped["estimate"]["basis"] and skipped["estimate"]["megabytes"] > 0
    report = json.loads(Path(out["reports"]["json"]).read_text())
    assert report["skipped"] == out["skipped"]


def test_a_budget_that_leaves_no_room_skips_a_candidate_and_says_so(tmp_path):
    movielens_project(tmp_path, users=120, candidates=["ease", "item_knn"], trials=None)
    config = tmp_path / "keel.yaml"
    loaded = yaml.safe_load(config.read_text())
    loaded.pop("trials", None)
    loaded["budget"] = 1  # over before it starts: one candidate is still trained
    config.write_text(yaml.safe_dump(loaded))
    done = keel_in(tmp_path, "run")
    assert done.exit_code in (0, 1), done.output
    assert "ease skipped: time: one fit and validation take about" in done.output
    report = next((tmp_path / ".keel" / "reports").rglob("report.html")).read_text()
    assert "Candidates skipped before training" in report and "the budget leaves it" in report
