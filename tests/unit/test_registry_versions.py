def test_an_experiment_created_by_a_concurrent_run_is_used_not_an_error() -> None:
    from mlflow.exceptions import MlflowException

    from keel.registry import ensure_experiment

    class Raced:
        """The other run creates the experiment between our look-up and our create."""

        def __init__(self) -> None:
            self.looked = 0

        def get_experiment_by_name(self, name):
            self.looked += 1
            if self.looked == 1:
                return None
            return type("E", (), {"experiment_id": "7", "lifecycle_stage": "active"})()

        def create_experiment(self, name, artifact_location=None):
            from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS

            raise MlflowException("Experiment(name=x) exists", error_code=RESOURCE_ALREADY_EXISTS)

    assert ensure_experiment(Raced(), "x", None) == "7"

    class Broken(Raced):
        def create_experiment(self, name, artifact_location=None):
            raise MlflowException("database is locked")

    import pytest

    with pytest.raises(MlflowException, match="locked"):
        ensure_experiment(Broken(), "x", None)
