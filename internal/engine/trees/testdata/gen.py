#!/usr/bin/python3
"""Generates the XGBoost models and golden predictions the trees tests use.

Run from this directory with Debian's Python, which has xgboost 1.7.4:

    cd internal/engine/trees/testdata && /usr/bin/python3 gen.py

For each case it writes <case>.json (Booster.save_model) and
<case>.golden.json: {"model", "objective", "num_feature", "inputs",
"predictions"}. Inputs are rows of float32 values written as float64, with
null for a missing value (NaN); predictions are xgboost's own float32 outputs
written as float64 with full precision (repr round-trips exactly), flat in
row-major order.
"""

import json

import numpy as np
import xgboost as xgb
from sklearn.datasets import load_breast_cancer, load_iris

SEED = 7


def with_missing(x, rate, rng):
    x = x.copy()
    x[rng.random_sample(x.shape) < rate] = np.nan
    return x


def row_list(row):
    return [None if np.isnan(v) else float(v) for v in row]


def write_case(name, params, rounds, x_train, y_train, x_test):
    x_train = x_train.astype(np.float32)
    x_test = x_test.astype(np.float32)
    dtrain = xgb.DMatrix(x_train, label=y_train, missing=np.nan)
    params = dict(params, seed=SEED, nthread=1)
    booster = xgb.train(params, dtrain, num_boost_round=rounds)
    booster.save_model(name + ".json")
    pred = booster.predict(xgb.DMatrix(x_test, missing=np.nan))
    golden = {
        "model": name + ".json",
        "objective": params["objective"],
        "num_feature": int(x_test.shape[1]),
        "inputs": [row_list(r) for r in x_test],
        "predictions": [float(v) for v in np.asarray(pred, dtype=np.float32).ravel()],
    }
    with open(name + ".golden.json", "w") as f:
        json.dump(golden, f, indent=1)
        f.write("\n")
    print(name, "trees:", len(booster.get_dump()), "rows:", len(x_test))


def main():
    rng = np.random.RandomState(SEED)

    # Binary classification with missing values in training and inputs.
    cancer = load_breast_cancer()
    xc = with_missing(cancer.data[:, :8], 0.15, rng)
    yc = cancer.target
    test = xc[-40:].copy()
    test[0, :] = np.nan  # a row with every feature missing
    for name, params in [
        ("binary_logistic", {"objective": "binary:logistic", "max_depth": 3}),
        ("binary_logistic_base", {"objective": "binary:logistic", "max_depth": 3, "base_score": 0.3}),
        ("binary_logitraw", {"objective": "binary:logitraw", "max_depth": 3, "base_score": 0.2}),
        ("binary_hinge", {"objective": "binary:hinge", "max_depth": 3}),
        ("reg_logistic", {"objective": "reg:logistic", "max_depth": 2, "base_score": 0.7}),
        ("dart_logistic", {"objective": "binary:logistic", "max_depth": 3, "booster": "dart",
                           "rate_drop": 0.3, "skip_drop": 0.0, "sample_type": "weighted",
                           "normalize_type": "forest"}),
    ]:
        write_case(name, params, 15, xc[:-40], yc[:-40], test)

    # Multi-class: iris, three classes.
    iris = load_iris()
    perm = rng.permutation(len(iris.target))
    xi, yi = iris.data[perm], iris.target[perm]
    for name, objective in [("multi_softprob", "multi:softprob"), ("multi_softmax", "multi:softmax")]:
        write_case(name, {"objective": objective, "num_class": 3, "max_depth": 3, "eta": 0.3},
                   10, xi[:-30], yi[:-30], xi[-30:])

    # Regression on a synthetic smooth function, plus a forest of two
    # parallel trees per round.
    xr = rng.uniform(-3, 3, size=(400, 5))
    yr = np.sin(xr[:, 0]) * 3 + xr[:, 1] ** 2 - 2 * xr[:, 2] + rng.normal(0, 0.1, 400) + 100
    write_case("reg_squarederror", {"objective": "reg:squarederror", "max_depth": 4, "eta": 0.3},
               20, xr[:-40], yr[:-40], xr[-40:])
    write_case("reg_forest", {"objective": "reg:squarederror", "max_depth": 3, "eta": 0.5,
                              "num_parallel_tree": 2, "subsample": 0.8, "colsample_bynode": 0.8},
               5, xr[:-40], yr[:-40], with_missing(xr[-40:], 0.2, rng))

    write_case("reg_pseudohuber", {"objective": "reg:pseudohubererror", "max_depth": 3, "base_score": 99},
               10, xr[:-40], yr[:-40], xr[-40:])
    write_case("reg_absoluteerror", {"objective": "reg:absoluteerror", "max_depth": 3},
               10, xr[:-40], yr[:-40], xr[-40:])

    # Counts: the margin is a log, the output its exponential.
    counts = rng.poisson(np.exp(0.3 * xr[:, 0] + 0.2 * xr[:, 1]))
    write_case("count_poisson", {"objective": "count:poisson", "max_depth": 3},
               15, xr[:-40], counts[:-40], xr[-40:])
    write_case("reg_tweedie", {"objective": "reg:tweedie", "max_depth": 3},
               15, xr[:-40], counts[:-40], xr[-40:])
    write_case("reg_gamma", {"objective": "reg:gamma", "max_depth": 3},
               15, xr[:-40], counts[:-40] + 1, xr[-40:])
    # Survival times, negative when censored.
    times = rng.exponential(np.exp(-0.5 * xr[:, 0])) * np.where(rng.random_sample(400) < 0.2, -1, 1)
    write_case("survival_cox", {"objective": "survival:cox", "max_depth": 3, "base_score": 2.0},
               10, xr[:-40], times[:-40], xr[-40:])


if __name__ == "__main__":
    main()
