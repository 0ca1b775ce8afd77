"""MovieLens 100k through Keel's recommendation lifecycle, end to end.

Run it with ``.venv/bin/python examples/movielens/demo.py`` after ``make install``.

1. writes the three MovieLens tables (read from the installed ``recbole==1.2.1``; never
   committed: MovieLens' licence forbids redistribution) and ``keel.yaml`` into
   ``examples/movielens/project/`` (git-ignored),
2. runs ``keel run``: a time split with cold-start users, random / popularity /
   recent-popularity baselines, tuned item_knn, EASE, ALS and BPR, full-ranking
   metrics with intervals, fairness across age and gender, exposure, the card,
3. prints the NDCG@10 / MAP@10 table of every model, warm and cold users apart,
4. starts ``keel serve`` on a free loopback port and prints a few users' recent history
   next to what ``POST /recommend`` answers (and a new user, who gets popularity and
   is told so), then ``keel loadtest`` and ``keel card`` with the measured latency,
5. writes the top 10 of every user with ``keel recommend``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
from movielens import write_project

HERE = Path(__file__).resolve().parent
PROJECT = HERE / "project"
KEEL = [sys.executable, "-m", "keel"]


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def keel(*args: str, capture: bool = False) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [*KEEL, *args], cwd=PROJECT, text=True, capture_output=capture, check=False
    )
    if done.returncode not in (0, 1):
        sys.exit(f"keel {' '.join(args)} failed ({done.returncode}): {done.stderr}")
    return done


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    PROJECT.mkdir(exist_ok=True)
    if not (PROJECT / "keel.yaml").exists():
        say("writing MovieLens 100k and keel.yaml into examples/movielens/project/")
        write_project(PROJECT)
    say("keel run")
    out = json.loads(keel("run", "--json", capture=True).stdout)
    rows = [
        {
            "model": c["name"] + (" (chosen)" if c["name"] == out["model"]["candidate"] else ""),
            "NDCG@10": c["test"]["ndcg_at_10"],
            "MAP@10": c["test"]["map_at_10"],
            "NDCG@10 warm": c["test_warm"]["ndcg_at_10"],
            "NDCG@10 cold": c["test_cold"]["ndcg_at_10"],
        }
        for c in out["candidates"]
    ]
    print(pd.DataFrame(rows).to_string(index=False, float_format="%.4f"))
    print(out["assessment"]["gate"]["describe"])
    print(f"report: {out['reports']['html']}\ncard:   {out['reports']['model_card_md']}")

    say("keel serve")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [*KEEL, "serve", "--port", str(port)], cwd=PROJECT, stderr=subprocess.DEVNULL
    )
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{url}/ready", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        ratings = pd.read_csv(PROJECT / "data" / "ratings.csv")
        items = pd.read_csv(PROJECT / "data" / "items.csv").set_index("item_id")["title"]
        for user in (1, 42, 196, "someone-new"):
            answer = post(f"{url}/recommend", {"user_id": user, "k": 5})
            mine = ratings[ratings["user_id"] == user].sort_values("timestamp").tail(5)
            liked = ", ".join(items.get(i, str(i)) for i in mine["item_id"]) or "(no history)"
            got = ", ".join(items.get(int(i["item_id"]), i["item_id"]) for i in answer["items"])
            flag = " [cold start: popularity]" if answer["cold_start"] else ""
            print(f"user {user}: recently {liked}\n  -> {got}{flag}")
        keel("loadtest", url, "--requests", "2000", "--concurrency", "8")
        keel("card")
    finally:
        server.terminate()
        server.wait(timeout=30)

    say("keel recommend: the top 10 of every user")
    pd.DataFrame({"user_id": sorted(ratings["user_id"].unique())}).to_csv(
        PROJECT / "data" / "all_users.csv", index=False
    )
    keel(
        "recommend",
        "movielens@champion",
        "data/all_users.csv",
        "top10.parquet",
        "--k",
        "10",
        "--force",
    )
    print(f"wrote {PROJECT / 'top10.parquet'}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
