"""The Open Inference Protocol v2 (KServe, Triton) over the same served model.

Inputs are one tensor per feature (columnar, ``shape [N]``), named as the schema's
features; outputs are ``predictions`` ([N], class labels as BYTES or values as FP64)
and, for classifiers, ``probabilities`` ([N, K], FP64, classes in the order of the
model metadata's ``parameters.classes``). JSON tensors only: the binary tensor data
extension is refused with a clear 400.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from keel._version import __version__

DATATYPES = {"integer": "INT64", "float": "FP64", "boolean": "BOOL"}
MAX_TENSORS = 1_000


class V2Tensor(BaseModel):
    """One input tensor."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(min_length=1, max_length=200)
    datatype: str = Field(min_length=1, max_length=20)
    shape: list[int] = Field(min_length=1, max_length=2)
    data: list[Any]
    parameters: dict[str, Any] | None = None


class V2Output(BaseModel):
    """One requested output."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(min_length=1, max_length=200)
    parameters: dict[str, Any] | None = None


class V2Request(BaseModel):
    """``POST /v2/models/{name}/infer``."""

    model_config = ConfigDict(extra="allow")
    id: str | None = Field(None, max_length=200)
    inputs: list[V2Tensor] = Field(min_length=1, max_length=MAX_TENSORS)
    outputs: list[V2Output] | None = None
    parameters: dict[str, Any] | None = None


def request_schema() -> dict[str, Any]:
    """The JSON schema of :class:`V2Request` with its definitions inlined (for OpenAPI)."""
    schema = V2Request.model_json_schema()
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(definitions[ref.removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return inline(schema)


def server_metadata() -> dict[str, Any]:
    """``GET /v2``."""
    return {"name": "keel", "version": __version__, "extensions": []}


def model_metadata(served: Any) -> dict[str, Any]:
    """``GET /v2/models/{name}``: inputs and outputs as tensors."""
    outputs = [
        {
            "name": "predictions",
            "datatype": "BYTES" if served.kind.labelled_classes else "FP64",
            "shape": [-1],
        }
    ]
    if served.kind.labelled_classes:
        outputs.append(
            {"name": "probabilities", "datatype": "FP64", "shape": [-1, len(served.classes)]}
        )
    return {
        "name": served.info["name"],
        "versions": [served.version],
        "platform": "keel",
        "inputs": [
            {"name": c.name, "datatype": DATATYPES.get(c.kind, "BYTES"), "shape": [-1]}
            for c in served.schema.features
        ],
        "outputs": outputs,
        "parameters": {"task": served.package.task, "classes": served.classes},
    }


def tensors_to_records(request: V2Request) -> tuple[list[dict[str, Any]] | None, str | None]:
    """Columnar input tensors → one record per row, or the first problem found."""
    rows: int | None = None
    columns: dict[str, list[Any]] = {}
    for tensor in request.inputs:
        if tensor.name in columns:
            return None, f"inputs: {tensor.name!r} given twice"
        if len(tensor.shape) == 2 and tensor.shape[1] != 1:
            return None, f"inputs.{tensor.name}: shape {tensor.shape}; give [N] or [N, 1]"
        n = tensor.shape[0]
        if n < 1:
            return None, f"inputs.{tensor.name}: shape {tensor.shape} has no rows"
        data = tensor.data
        if data and isinstance(data[0], list):  # nested [[v], [v]] is allowed
            data = [d[0] if isinstance(d, list) and len(d) == 1 else d for d in data]
        if len(data) != n:
            return None, f"inputs.{tensor.name}: shape says {n} values, data has {len(data)}"
        if rows is not None and n != rows:
            return None, f"inputs.{tensor.name}: {n} rows, other inputs have {rows}"
        rows = n
        if tensor.datatype == "BOOL":
            data = [bool(v) if isinstance(v, bool | int) else v for v in data]
        columns[tensor.name] = data
    assert rows is not None
    records = [{name: values[i] for name, values in columns.items()} for i in range(rows)]
    return records, None


def outputs_of(
    answer: dict[str, Any], served: Any, wanted: list[V2Output] | None
) -> list[dict[str, Any]]:
    """The answer as v2 output tensors (only the requested ones, if any were named)."""
    predictions = answer["predictions"]
    n = len(predictions)
    out = [
        {
            "name": "predictions",
            "datatype": "BYTES" if served.kind.labelled_classes else "FP64",
            "shape": [n],
            "data": [str(p) for p in predictions]
            if served.kind.labelled_classes
            else [p if p is None or math.isfinite(p) else None for p in predictions],
        }
    ]
    if "probabilities" in answer:
        flat = [row[c] for row in answer["probabilities"] for c in served.classes]
        out.append(
            {
                "name": "probabilities",
                "datatype": "FP64",
                "shape": [n, len(served.classes)],
                "data": flat,
            }
        )
    if wanted:
        names = {w.name for w in wanted}
        out = [o for o in out if o["name"] in names]
    return out


__all__ = [
    "V2Request",
    "model_metadata",
    "outputs_of",
    "request_schema",
    "server_metadata",
    "tensors_to_records",
]
