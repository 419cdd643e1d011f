"""Shared by the Flask and FastAPI peers: load the XGBoost model the way a
Python user would (xgboost.Booster().load_model) and answer an OIP v2 infer
request with the same JSON shape as ebb's trees engine."""
import os

import numpy as np
import xgboost as xgb

MODEL_PATH = os.environ["EBB_BENCH_MODEL"]
MODEL_NAME = os.environ.get("EBB_BENCH_MODEL_NAME", "diabetes")

booster = xgb.Booster()
booster.load_model(MODEL_PATH)
# One server core: keep XGBoost's OpenMP pool to one thread.
booster.set_param({"nthread": 1})


class BadRequest(Exception):
    pass


def infer(body):
    try:
        inp = body["inputs"][0]
        x = np.asarray(inp["data"], dtype=np.float32).reshape(inp["shape"])
    except (KeyError, IndexError, TypeError, ValueError) as e:
        raise BadRequest(f"malformed OIP v2 request: {e}") from e
    if x.ndim == 1:
        x = x.reshape(1, -1)
    # The request's columns are in the model's feature order; skip the
    # per-call feature-name check (the fastest correct call).
    y = booster.predict(xgb.DMatrix(x), validate_features=False)
    return {
        "model_name": MODEL_NAME,
        "outputs": [{"name": "predict", "datatype": "FP32", "shape": [int(y.shape[0])], "data": y.tolist()}],
    }
