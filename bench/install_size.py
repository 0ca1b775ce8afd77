"""Packages and disk size of a fresh venv per install of keel-ml, and `keel --help` time.

    .venv/bin/python bench/install_size.py [--out bench/results/install_size.json]

For each install — the core, each family extra, every family at once (what one install
gave before the extras), and ``[all]`` — a new venv outside the tree gets
``pip install -c constraints.txt <the wheel>[extra]``; then the script counts the
distributions in it, measures its size on disk (``du``) and times ``keel --help`` (the
median of 5, a whole process: the import time a user waits for). Builds the wheel first
from a copy of the tree (``pip wheel --no-deps``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INSTALLS = {
    "core": "",
    "recommend": "[recommend]",
    "rag": "[rag]",
    "experiments": "[experiments]",
    "every family and A/B tests (the one install before the extras)": "[recommend,rag,experiments]",
    "all": "[all]",
}


def _wheel(work: Path) -> Path:
    tree = work / "tree"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(ROOT / "src", tree / "src", ignore=skip)
    for name in ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in", "CHANGELOG.md"):
        shutil.copy(ROOT / name, tree / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(work), str(tree)],
        check=True,
    )  # fmt: skip
    (wheel,) = work.glob("keel_ml-*.whl")
    return wheel


def measure(wheel: Path, extra: str, venv: Path) -> dict:
    """Install ``wheel[extra]`` into a new venv; count, size and time it."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin/python"
    started = time.perf_counter()
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "-c", str(ROOT / "constraints.txt"), f"{wheel}{extra}"],
        check=True,
    )  # fmt: skip
    install = time.perf_counter() - started
    listed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format", "json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    packages = len(json.loads(listed.stdout))
    size = subprocess.run(["du", "-sm", str(venv)], capture_output=True, text=True, check=True)
    times = []
    for _ in range(5):
        started = time.perf_counter()
        subprocess.run([str(venv / "bin/keel"), "--help"], capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return {
        "packages": packages,
        "megabytes": int(size.stdout.split()[0]),
        "install_seconds": round(install, 1),
        "keel_help_seconds": round(statistics.median(times), 3),
    }


def main() -> None:
    """Measure every install; print a Markdown table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/install_size.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="keel-sizes-"))
    try:
        wheel = _wheel(work)
        results = {}
        for label, extra in INSTALLS.items():
            results[label] = {"extra": extra, **measure(wheel, extra, work / f"venv{len(results)}")}
            print(label, results[label], flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "installs": results},
                                   indent=2) + "\n")  # fmt: skip
    print("| install | packages | size | `keel --help` |\n|---|---|---|---|")
    for label, r in results.items():
        print(f"| `keel-ml{r['extra']}` ({label}) | {r['packages']} | {r['megabytes']:,} MB |"
              f" {r['keel_help_seconds']:.2f} s |")  # fmt: skip


if __name__ == "__main__":
    main()
