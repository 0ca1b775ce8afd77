"""MLflow loader of a constant model (logged from code with its package)."""

import json
from pathlib import Path

import mlflow
import pandas as pd


class ConstantModel(mlflow.pyfunc.PythonModel):
    """Scores every row with the stored constant."""

    def load_context(self, context):
        folder = Path(context.artifacts["constant"])
        self.value = json.loads((folder / "constant.json").read_text())["value"]

    def predict(self, context, model_input, params=None):
        return pd.DataFrame({"score": [self.value] * len(model_input)})


mlflow.models.set_model(ConstantModel())
