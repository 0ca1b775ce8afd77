"""Semantic versions from a registry's tags (an in-memory registry: only tags matter)."""

from __future__ import annotations

import json
from types import SimpleNamespace

from keel.registry._versions import INTERFACE_TAG, SEMVER_TAG, assign_semver, tabular_interface


class _Registry:
    """The three registry calls assign_semver makes, over a dict of tags."""

    def __init__(self, tags: dict[str, dict[str, str]]) -> None:
        self.tags = tags
        self.searches = 0

    def search_model_versions(self, _query: str) -> list:
        self.searches += 1
        return [SimpleNamespace(version=v, tags=dict(t)) for v, t in self.tags.items()]

    def get_model_version(self, _name: str, version: str):
        return SimpleNamespace(version=version, tags=dict(self.tags[version]))

    def set_model_version_tag(self, _name: str, version: str, key: str, value: str) -> None:
        self.tags[version][key] = value


def test_a_taken_major_minor_moves_to_the_next_free_minor_in_one_search(tmp_path) -> None:
    schema = {"columns": [{"name": "age", "kind": "integer", "nullable": False}]}
    interface = tabular_interface(schema, {"task": "binary", "classes": ["a", "b"]})
    registry = _Registry(
        {
            "1": {SEMVER_TAG: "1.0.0"},
            "2": {SEMVER_TAG: "1.1.2"},  # a line patched twice
            "3": {SEMVER_TAG: "1.0.1", INTERFACE_TAG: json.dumps(interface)},  # the latest
            "4": {},
        }
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    semver, why = assign_semver(registry, uri, "m", "4", interface)
    assert semver == "1.2.0"  # 1.1 is taken by version 2, even at another patch
    assert registry.searches == 1
    assert registry.tags["4"][SEMVER_TAG] == "1.2.0" and why.startswith("compatible")
