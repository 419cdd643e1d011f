#!/usr/bin/python3
"""Trains the diabetes example: an XGBoost regressor on scikit-learn's bundled
diabetes dataset (442 patients, 10 standardised features, target: disease
progression one year later).

Run from the repository root with Debian's Python (xgboost 1.7.4):

    /usr/bin/python3 examples/diabetes/train.py

It writes, next to this script:
  model.json    the booster, Booster.save_model format (what ebb serves)
  golden.json   50 hold-out rows and xgboost's own predictions, full precision
  request.json  a sample OIP v2 infer request body with 2 rows
  model-v2.json, golden-v2.json
                a second, differently tuned model (a "challenger"), used to
                show a registry alias moving a deployment to a new version
and prints the hold-out metrics.
"""

import json
import os

import numpy as np
import xgboost as xgb
from sklearn.datasets import load_diabetes
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.model_selection import train_test_split

SEED = 42
HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    data = load_diabetes()
    x = data.data.astype(np.float32)
    y = data.target
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=50, random_state=SEED)

    params = {
        "objective": "reg:squarederror",
        "max_depth": 4,
        "eta": 0.05,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "min_child_weight": 2,
        "seed": SEED,
        "nthread": 1,
    }
    dtrain = xgb.DMatrix(x_train, label=y_train, feature_names=list(data.feature_names))
    booster = xgb.train(params, dtrain, num_boost_round=100)
    booster.save_model(os.path.join(HERE, "model.json"))

    pred = booster.predict(xgb.DMatrix(x_test, feature_names=list(data.feature_names)))
    golden = {
        "model": "model.json",
        "objective": params["objective"],
        "num_feature": int(x.shape[1]),
        "feature_names": list(data.feature_names),
        "inputs": [[float(v) for v in row] for row in x_test],
        "targets": [float(v) for v in y_test],
        "predictions": [float(v) for v in pred],
    }
    with open(os.path.join(HERE, "golden.json"), "w") as f:
        json.dump(golden, f)
        f.write("\n")

    # Flat row-major data, one row per line, so the file reads like the tensor.
    rows = ",\n        ".join(", ".join(repr(float(v)) for v in row) for row in x_test[:2])
    request = (
        '{\n  "inputs": [\n    {\n      "name": "input",\n      "shape": [2, %d],\n'
        '      "datatype": "FP32",\n      "data": [\n        %s\n      ]\n    }\n  ]\n}\n'
    ) % (x.shape[1], rows)
    json.loads(request)  # well-formed
    with open(os.path.join(HERE, "request.json"), "w") as f:
        f.write(request)

    print("trees:", len(booster.get_dump()), "train rows:", len(y_train), "hold-out rows:", len(y_test))
    print("hold-out RMSE: %.2f" % np.sqrt(mean_squared_error(y_test, pred)))
    print("hold-out MAE:  %.2f" % mean_absolute_error(y_test, pred))
    print("hold-out R^2:  %.3f" % r2_score(y_test, pred))
    print("request.json rows predict:", [float(v) for v in pred[:2]])

    # The challenger: shallower trees, more rounds.
    params_v2 = dict(params, max_depth=3, eta=0.03)
    booster_v2 = xgb.train(params_v2, dtrain, num_boost_round=200)
    booster_v2.save_model(os.path.join(HERE, "model-v2.json"))
    pred_v2 = booster_v2.predict(xgb.DMatrix(x_test, feature_names=list(data.feature_names)))
    with open(os.path.join(HERE, "golden-v2.json"), "w") as f:
        json.dump(dict(golden, model="model-v2.json", predictions=[float(v) for v in pred_v2]), f)
        f.write("\n")
    print("challenger hold-out RMSE: %.2f" % np.sqrt(mean_squared_error(y_test, pred_v2)))


if __name__ == "__main__":
    main()
