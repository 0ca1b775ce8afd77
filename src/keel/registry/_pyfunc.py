"""A family's package as an MLflow pyfunc logged from code: log, register, load.

The family supplies plain parts — the loader code file (its ``pyfunc.py``), a function
that saves the model into a folder, an input example and output, its requirements, its
metadata — and this adapter does the MLflow calls (a family never imports MLflow).
Every version records ``keel.family`` and ``keel.task`` (tags and ``metadata.keel``);
loading checks the version was made by that family, from that record.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import infer_signature

from keel.errors import ModelNotFoundError
from keel.registry._mlflow import (
    METADATA_KEY,
    PACKAGE_DIR,
    ModelRef,
    downloaded_package,
    family_tags,
)


@dataclass
class LoadedModel:
    """A family's model loaded from the registry with its metadata and documents."""

    name: str
    version: str
    alias: str | None
    model: Any = field(repr=False)
    metadata: dict[str, Any] = field(repr=False)
    documents: dict[str, Any] = field(default_factory=dict, repr=False)
    semver: str | None = None

    @property
    def task(self) -> str:
        """The task the package records."""
        return str(self.metadata.get("task"))


def log_pyfunc_package(
    *,
    code: Path,
    artifact: str,
    save: Callable[[Path], dict[str, str] | None],
    registered_name: str,
    metadata: dict[str, Any],
    example: pd.DataFrame,
    output: pd.DataFrame,
    requirements: Sequence[str],
    files: dict[str, Any] | None = None,
    version_tags: dict[str, str] | None = None,
    with_example: bool = True,
    digest_tag: tuple[str, Callable[[dict[str, str]], str]] | None = None,
) -> ModelRef:
    """Log a family's model as a pyfunc (from ``code``) in the active run; register it.

    ``save(folder)`` writes the model into ``folder`` (the artifact ``artifact``) and may
    return each file's SHA-256 (kept as ``metadata.keel.package_files``). ``files`` are
    JSON documents stored under ``keel/``. ``digest_tag=(tag, digest)`` tags the run and
    the version with ``digest(file digests)`` (e.g. a retrieval index's digest).
    """
    pins = [f"{p}=={installed_version(p)}" for p in requirements]
    tags = family_tags(metadata)
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        saved = Path(folder) / artifact
        digests = save(saved)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(code),
            artifacts={artifact: str(saved)},
            signature=infer_signature(example, output),
            input_example=example if with_example else None,
            pip_requirements=pins,
            metadata={
                METADATA_KEY: {**metadata, **({"package_files": digests} if digests else {})}
            },
        )
        documents = Path(folder) / "documents"
        documents.mkdir()
        for name, document in (files or {}).items():
            (documents / name).write_text(json.dumps(document, sort_keys=True, default=str))
        MlflowClient().log_model_artifacts(info.model_id, str(documents), PACKAGE_DIR)
        if digest_tag is not None and digests:
            tags[digest_tag[0]] = digest_tag[1](digests)
        mlflow.set_tags(tags)
        version = mlflow.register_model(
            info.model_uri, registered_name, tags={**(version_tags or {}), **tags}
        )
    return ModelRef(registered_name, str(version.version))


def load_pyfunc_package(
    uri: str, tracking_uri: str, family: str, artifact: str, load: Callable[[Path], Any]
) -> LoadedModel:
    """Load ``NAME[@ALIAS|/VERSION]`` made by ``family`` from the registry only.

    ``load(folder)`` reads the model from its saved artifact folder; a ``ValueError``
    (a file that differs from its recorded digest) is a ``ModelNotFoundError``.
    """
    from keel.families import FAMILIES

    with downloaded_package(uri, tracking_uri) as found:
        recorded = FAMILIES.of_metadata(found.meta).name if found.meta else None
        if recorded != family:
            raise ModelNotFoundError(
                f"{found.model_uri} is not a Keel {family} model"
                + (f" (it records family {recorded!r})" if recorded else "")
            )
        folder = found.local / "artifacts" / artifact
        if not folder.is_dir():
            raise ModelNotFoundError(f"{found.model_uri} has no {artifact} package")
        try:
            model = load(folder)
        except ValueError as exc:
            raise ModelNotFoundError(f"{found.model_uri}: {exc}") from None
    return LoadedModel(
        found.name,
        str(found.version.version),
        found.alias,
        model,
        {"family": family, **found.meta},
        found.documents,
        semver=(found.version.tags or {}).get("keel.semver"),
    )


def register_prompt(name: str, template: str, tags: dict[str, str]) -> dict[str, Any]:
    """Version a prompt template in MLflow's prompt registry (``{"name", "version"}``).

    Returns ``{"error": ...}`` when the tracking store has no prompt registry: the
    template is still stored in the package and logged as an artifact.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prompt = mlflow.genai.register_prompt(
                name=f"{name}-answer",
                template=template.replace("{passages}", "{{passages}}").replace(
                    "{question}", "{{question}}"
                ),
                commit_message="keel run",
                tags=tags,
            )
        return {"name": prompt.name, "version": str(prompt.version)}
    except Exception as exc:  # reported on the card: the package still holds it
        return {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}


def package_metadata(uri: str, tracking_uri: str) -> dict[str, Any]:
    """``metadata.keel`` of ``NAME[@ALIAS|/VERSION]`` (reads ``MLmodel`` only)."""
    from keel.registry._mlflow import package_documents

    meta, _ = package_documents(uri, tracking_uri, ())
    return meta


def package_family(uri: str, tracking_uri: str) -> Any:
    """The family that made ``NAME[@ALIAS|/VERSION]``, from its recorded metadata.

    Raises ``KeelInputError`` (exit 2) naming the install line when the family's extra
    is not installed here: loading the package would fail on an import.
    """
    from keel.errors import KeelInputError
    from keel.families import FAMILIES

    family = FAMILIES.of_metadata(package_metadata(uri, tracking_uri))
    why = family.missing_extra()
    if why:
        raise KeelInputError(f"{uri}: {why}")
    return family
