"""The rules that keep the house holding itself, as tests (not intentions).

* generic code never compares against a family's or a task's name: it asks the
  family's capabilities or calls the family (``keel.families``);
* no function in ``src/keel`` is over 100 lines (a ratchet: the list of known long
  functions may only shrink);
* the family registry imports no family's heavy library, and every family folder is
  registered, documented and built of the same module names.

Import contracts (a family never imports another; generic layers reach families only
through the registry) are import-linter's, in ``pyproject.toml`` (``make imports``).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from keel.families import BUILT_IN, FAMILIES

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "keel"
FAMILY_DIR = SRC / "families"
# names an older Keel used for families ("ranking") count as names too
LEGACY_NAMES = {"ranking", "recommender", "recommenders"}
MAX_LINES = 100  # no exceptions: the 24 functions over it when the rule came are split


def _names() -> set[str]:
    names = set(LEGACY_NAMES)
    for name in FAMILIES:
        names.add(name)
        names.update(FAMILIES[name].tasks)
    return names


def _constants(names: set[str]) -> dict[str, str]:
    """Module-level constants anywhere in src/keel that hold a family or task name."""
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Constant)
                and node.value.value in names
            ):
                found |= {t.id: node.value.value for t in node.targets if isinstance(t, ast.Name)}
    return found


def _literals(node: ast.AST, constants: dict[str, str] | None = None) -> list[str]:
    constants = constants or {}
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Name) and node.id in constants:  # RETRIEVAL = "retrieval"
        return [constants[node.id]]
    if isinstance(node, ast.Attribute) and node.attr in constants:  # config.RETRIEVAL
        return [constants[node.attr]]
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [v for e in node.elts for v in _literals(e, constants)]
    return []


def name_sites(
    tree: ast.AST, names: set[str], constants: dict[str, str] | None = None
) -> list[tuple[int, str]]:
    """Comparisons, ``match`` cases and registry look-ups naming a family or a task."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                if set(_literals(side, constants)) & names:
                    found.append((node.lineno, ast.unparse(node)))
                    break
        elif isinstance(node, ast.MatchValue) and set(_literals(node.value)) & names:
            found.append((node.lineno, f"case {ast.unparse(node.value)}"))
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value).endswith("FAMILIES"):
            if set(_literals(node.slice)) & names:
                found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.Call) and ast.unparse(node.func).endswith(
            ("get_family", "for_task")
        ):
            if any(set(_literals(a)) & names for a in node.args):
                found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.Name | ast.FunctionDef) and getattr(
            node, "id", getattr(node, "name", "")
        ).startswith(("is_recommender", "is_retrieval", "is_tabular")):
            found.append((node.lineno, getattr(node, "id", getattr(node, "name", ""))))
    return found


def _generic_modules() -> list[Path]:
    return [p for p in sorted(SRC.rglob("*.py")) if FAMILY_DIR not in p.parents]


def test_generic_code_never_compares_against_a_family_or_task_name():
    names = _names()
    constants = _constants(names)
    found = [
        f"{path.relative_to(SRC)}:{line}: {text}"
        for path in _generic_modules()
        for line, text in name_sites(ast.parse(path.read_text()), names, constants)
    ]
    assert found == [], "ask the family (keel.families) or its capabilities:\n" + "\n".join(found)


def test_the_name_guard_can_fail():
    code = (
        "if task == 'regression': pass\n"
        "if family in ('ranking', 'x'): pass\n"
        "match kind:\n    case 'retrieval': pass\n"
        "FAMILIES['tabular']\n"
        "get_family('recommendation')\n"
        "is_recommender(uri)\n"
        "if task == 'tabularish': pass\n"
        "if config.task == RETRIEVAL: pass\n"
        "if data.get('task') in (RECOMMENDATION, 'x'): pass\n"
    )
    constants = {"RETRIEVAL": "retrieval", "RECOMMENDATION": "recommendation"}
    assert len(name_sites(ast.parse(code), _names(), constants)) == 8


def _long_in(source: str, where: str) -> dict[str, int]:
    long = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines = node.end_lineno - node.lineno + 1
            if lines > MAX_LINES:
                long[f"{where}:{node.name}"] = lines
    return long


def _long_functions(root: Path) -> dict[str, int]:
    long = {}
    for path in sorted(root.rglob("*.py")):
        long |= _long_in(path.read_text(), path.relative_to(root).as_posix())
    return long


def test_the_length_guard_sees_long_functions_and_methods():
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_LINES))
    method = "".join(f"        x{i} = {i}\n" for i in range(MAX_LINES))
    source = f"def long():\n{body}\nclass A:\n    async def method(self):\n{method}"
    assert set(_long_in(source, "m.py")) == {"m.py:long", "m.py:method"}
    assert _long_in("def short():\n    return 1\n", "m.py") == {}


def test_no_function_over_100_lines():
    dummy = ROOT / "tests" / "resources" / "keel-dummy-family" / "src"
    long = _long_functions(SRC) | _long_functions(dummy)
    assert long == {}, f"split these (over {MAX_LINES} lines): {long}"


HEAVY = ("implicit", "faiss", "wordllama", "bm25s", "Stemmer", "torch", "shap", "lightgbm")


def test_the_registry_and_the_cli_import_no_family_library():
    code = (
        "import json, sys\n"
        "import keel.cli, keel.serving\n"
        "from keel.families import FAMILIES\n"
        "[FAMILIES[n] for n in FAMILIES]\n"
        "[f.capabilities for f in FAMILIES.values()]\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == []


def test_every_family_folder_is_registered_documented_and_alike():
    folders = {p.name for p in FAMILY_DIR.iterdir() if (p / "__init__.py").is_file()}
    assert folders == set(BUILT_IN)
    guide = (ROOT / "docs" / "families.md").read_text()
    shared = {"__init__.py", "task.py", "pipeline.py", "serve.py", "monitor.py", "cli.py"}
    for name in folders:
        files = {p.name for p in (FAMILY_DIR / name).glob("*.py")}
        assert shared <= files, (name, sorted(shared - files))
        assert f"`{name}`" in guide, f"docs/families.md does not describe {name}"
        family = FAMILIES[name]
        assert family.name == name and family.tasks and family.stage_names
    assert sum(f.default for f in FAMILIES.values()) == 1  # one family runs untasked configs


def test_unknown_family_and_task_names_list_the_known_ones():
    from keel.errors import ConfigError

    with pytest.raises(ConfigError, match=r"'forecast' is not a model family.*tabular"):
        FAMILIES.get_family("forecast")
    with pytest.raises(ConfigError, match=r"'recomendation'.*did you mean 'recommendation'"):
        FAMILIES.for_task("recomendation")
    assert FAMILIES.of_metadata({"task": "binary"}).name == "tabular"  # older packages


def test_a_plug_in_that_fails_to_load_is_reported_and_left_out():
    from keel.errors import ConfigError, KeelWarning
    from keel.families import Families

    families = Families(BUILT_IN, group="keel.no-such-group")
    families.register("broken", "keel_no_such_module:FAMILY")
    with pytest.warns(KeelWarning, match="'broken'.*could not be loaded"):
        names = [f.name for f in families.usable()]
    assert names == ["tabular", "recommendation", "retrieval"]
    with pytest.raises(ConfigError, match="reinstall the package that provides it"):
        families["broken"]
    with pytest.raises(ValueError, match="registered twice"):
        families.register("tabular", "x:y")


def test_keel_help_reads_no_config_model_and_no_mlflow():
    """`keel --help` loads the families' descriptors and commands, nothing heavier."""
    code = (
        "import json, sys\n"
        "import keel.cli\n"
        "from keel.families import FAMILIES\n"
        "[(f.capabilities, f.stage_names) for f in FAMILIES.values()]\n"
        f"heavy = ('keel.config._model', 'mlflow', 'pandas', 'sklearn', *{HEAVY!r})\n"
        "print(json.dumps(sorted(m for m in heavy if m in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == []
