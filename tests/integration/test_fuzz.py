"""schemathesis against a live `keel serve`: no 5xx, no crash, every answer as documented."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import start_server, train_project

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def live_server(
    tmp_path_factory: pytest.TempPathFactory, adult_frame: pd.DataFrame
) -> Iterator[str]:
    root = tmp_path_factory.mktemp("fuzzed")
    train_project(root, adult_frame)
    process, url = start_server(root)
    yield url
    process.terminate()
    process.wait(timeout=60)
    # the server survived everything thrown at it and logged no traceback for a client
    assert "Traceback" not in (root / "serve.log").read_text()


@pytest.fixture(scope="module")
def api_schema(live_server: str):
    return schemathesis.openapi.from_url(f"{live_server}/openapi.json")


def test_served_api_survives_fuzzing(api_schema) -> None:
    """Every operation of the served schema, with generated (and invalid) requests.

    (schemathesis's pytest plugin does not run under pytest 9 here, so the operations
    are driven through Hypothesis directly: the same strategies and checks.)
    """
    operations = [result.ok() for result in api_schema.get_all_operations()]
    paths = {op.path for op in operations}
    assert {"/predict", "/explain", "/feedback", "/v2/models/{name}/infer"} <= paths
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case) -> None:
            case.call_and_validate(
                checks=[
                    not_a_server_error,
                    status_code_conformance,
                    content_type_conformance,
                    response_schema_conformance,
                ]
            )

        fuzz()
