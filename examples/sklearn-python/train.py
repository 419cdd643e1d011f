#!/usr/bin/python3
"""Trains the sklearn-python example: a scikit-learn pipeline shaped like the
classic housing-price model (impute, scale, one-hot encode, linear regression)
on scikit-learn's bundled diabetes dataset, so nothing is downloaded.

The 10 clinical measurements (age, sex, bmi, bp, s1-s6, in their original
units) are the numeric features; a categorical "clinic" column (north, south,
east, west), drawn with a fixed seed and given an effect on the target, plays
the part of the housing model's "ocean proximity". About 5% of the numeric
values are blanked out so the imputer has work to do.

Run from the repository root with Debian's Python (scikit-learn 1.2.1):

    /usr/bin/python3 examples/sklearn-python/train.py

It writes, next to this script:
  model.joblib  the fitted pipeline (joblib.dump), what model.py loads
  golden.json   50 hold-out rows and the pipeline's own predictions
  request.json  a sample OIP v2 infer request body with 2 rows
and prints the hold-out metrics.
"""

import json
import math
import os
import sys

import joblib
import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ next to model.py
from model import CLINICS, N_FEATURES, to_matrix  # noqa: E402  (the served code path)

SEED = 42
CLINIC_EFFECT = {"north": 12.0, "south": -8.0, "east": 0.0, "west": 25.0}


def build_pipeline():
    numeric = Pipeline([
        ("impute", SimpleImputer(strategy="median")),
        ("scale", StandardScaler()),
    ])
    features = ColumnTransformer([
        ("numeric", numeric, list(range(N_FEATURES))),
        ("clinic", OneHotEncoder(categories=[list(CLINICS)], handle_unknown="ignore"), [N_FEATURES]),
    ])
    return Pipeline([("features", features), ("regress", LinearRegression())])


def main():
    rng = np.random.default_rng(SEED)
    data = load_diabetes(scaled=False)
    x = data.data.astype(np.float64)
    clinic = rng.choice(CLINICS, size=len(x))
    y = data.target + np.array([CLINIC_EFFECT[c] for c in clinic])
    missing = rng.random(x.shape) < 0.05
    x[missing] = np.nan

    idx = np.arange(len(x))
    train, test = train_test_split(idx, test_size=50, random_state=SEED)
    pipe = build_pipeline()
    pipe.fit(to_matrix(x[train], clinic[train]), y[train])
    joblib.dump(pipe, os.path.join(HERE, "model.joblib"))

    pred = pipe.predict(to_matrix(x[test], clinic[test]))

    def cell(v):
        return None if math.isnan(v) else float(v)

    golden = {
        "model": "model.joblib",
        "feature_names": list(data.feature_names),
        "clinics": list(CLINICS),
        "inputs": {
            "features": [[cell(v) for v in row] for row in x[test]],
            "clinic": [str(c) for c in clinic[test]],
        },
        "targets": [float(v) for v in y[test]],
        "predictions": [float(v) for v in pred],
    }
    with open(os.path.join(HERE, "golden.json"), "w") as f:
        json.dump(golden, f)
        f.write("\n")

    # Two hold-out rows from different clinics, one with a missing value.
    first = next(i for i in test if np.isnan(x[i]).any())
    second = next(i for i in test if clinic[i] != clinic[first])
    rows = [first, second]

    def num(v):
        return "null" if math.isnan(v) else repr(float(v))

    # One row per line, so the file reads like the tensor.
    features = ",\n        ".join("[" + ", ".join(num(v) for v in x[i]) + "]" for i in rows)
    clinics = ", ".join(json.dumps(str(clinic[i])) for i in rows)
    request = (
        '{\n  "inputs": [\n'
        '    {\n      "name": "features",\n      "shape": [2, %d],\n      "datatype": "FP64",\n'
        '      "data": [\n        %s\n      ]\n    },\n'
        '    {\n      "name": "clinic",\n      "shape": [2],\n      "datatype": "BYTES",\n'
        '      "data": [%s]\n    }\n  ]\n}\n'
    ) % (N_FEATURES, features, clinics)
    json.loads(request)  # well-formed
    with open(os.path.join(HERE, "request.json"), "w") as f:
        f.write(request)
    request_pred = pipe.predict(to_matrix(x[rows], clinic[rows]))

    print("train rows:", len(train), "hold-out rows:", len(test), "missing values:", int(missing.sum()))
    print("hold-out RMSE: %.2f" % math.sqrt(mean_squared_error(y[test], pred)))
    print("hold-out MAE:  %.2f" % mean_absolute_error(y[test], pred))
    print("hold-out R^2:  %.3f" % r2_score(y[test], pred))
    print("request.json rows predict:", [float(v) for v in request_pred])


if __name__ == "__main__":
    main()
