#!/usr/bin/python3
"""Trains a PyTorch MLP on scikit-learn's digits dataset and exports it to
ONNX for ebb's onnx engine.

Writes, next to this script (or into --out):
  model.onnx    the network: input "input" FP32 [batch, 64] (8x8 pixel
                intensities 0..16), outputs "logits" and "probabilities"
                FP32 [batch, 10]; the batch dimension is dynamic.
  golden.json   recorded inputs and PyTorch's outputs for them, at full
                precision, which ebb's tests compare ONNX Runtime against.
  request.json  an OIP v2 infer request with two rows.

With --wide it trains the same network with two 2048-wide hidden layers
instead (64 -> 2048 -> 2048 -> 10, 4.3M parameters, 17 MB), a model whose
compute per row dominates the cost of serving it over HTTP, for the batching
benchmark; it writes model-wide.onnx and golden-wide.json (the same inputs
and outputs; request.json serves both models).

Needs Debian's packages (no downloads; the dataset ships with sklearn):
  apt-get install -y python3-torch python3-onnx python3-sklearn
and Debian's interpreter: /usr/bin/python3 examples/mlp-onnx/export.py [--wide]
"""

import argparse
import json
import os

import numpy as np
import onnx
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 0
GOLDEN_ROWS = 8


# The two variants: hidden layer widths, Adam's learning rate, epochs and
# the files written. The wide one learns with a smaller step.
VARIANTS = {
    "small": {"hidden": (128, 64), "lr": 1e-2, "epochs": 30, "model": "model.onnx", "golden": "golden.json"},
    "wide": {"hidden": (2048, 2048), "lr": 1e-3, "epochs": 10, "model": "model-wide.onnx", "golden": "golden-wide.json"},
}


class MLP(torch.nn.Module):
    """64 -> hidden[0] -> hidden[1] -> 10 with ReLU; returns logits and softmax."""

    def __init__(self, hidden=(128, 64)):
        super().__init__()
        h1, h2 = hidden
        self.net = torch.nn.Sequential(
            torch.nn.Linear(64, h1),
            torch.nn.ReLU(),
            torch.nn.Linear(h1, h2),
            torch.nn.ReLU(),
            torch.nn.Linear(h2, 10),
        )

    def forward(self, x):
        # Scale pixel intensities 0..16 to 0..1 inside the graph, so clients
        # send the raw features.
        logits = self.net(x / 16.0)
        return logits, torch.softmax(logits, dim=1)


def train(model, x, y, lr, epochs):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(SEED)
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            logits, _ = model(x[idx])
            loss_fn(logits, y[idx]).backward()
            opt.step()


def tensor_json(t):
    a = t.detach().numpy().astype(np.float32)
    # float(np.float32) is exact in a double; repr round-trips it.
    return {"shape": list(a.shape), "data": [float(v) for v in a.reshape(-1)]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wide", action="store_true", help="export the wide variant (model-wide.onnx, golden-wide.json)")
    parser.add_argument("--out", default=HERE, help="directory to write into (default: next to this script)")
    args = parser.parse_args()
    variant = VARIANTS["wide" if args.wide else "small"]
    out = args.out
    os.makedirs(out, exist_ok=True)

    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data.astype(np.float32), digits.target, test_size=0.25, random_state=SEED
    )
    xt = torch.from_numpy(x_train)
    yt = torch.from_numpy(y_train).long()
    model = MLP(variant["hidden"])
    train(model, xt, yt, variant["lr"], variant["epochs"])
    model.eval()

    with torch.no_grad():
        _, probs = model(torch.from_numpy(x_test))
    accuracy = float((probs.argmax(dim=1).numpy() == y_test).mean())
    print(f"test accuracy: {accuracy:.4f}")

    path = os.path.join(out, variant["model"])
    torch.onnx.export(
        model,
        torch.from_numpy(x_test[:1]),
        path,
        input_names=["input"],
        output_names=["logits", "probabilities"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}, "probabilities": {0: "batch"}},
        opset_version=13,
        do_constant_folding=True,
    )
    onnx.checker.check_model(onnx.load(path))

    rows = torch.from_numpy(x_test[:GOLDEN_ROWS])
    with torch.no_grad():
        logits, probs = model(rows)
    golden = {
        "model": variant["model"],
        "exporter": f"torch {torch.__version__}, onnx {onnx.__version__}, opset 13",
        "dataset": "sklearn.datasets.load_digits, test split (random_state=0)",
        "test_accuracy": accuracy,
        "labels": [int(v) for v in y_test[:GOLDEN_ROWS]],
        "inputs": {"input": tensor_json(rows)},
        "outputs": {"logits": tensor_json(logits), "probabilities": tensor_json(probs)},
    }
    with open(os.path.join(out, variant["golden"]), "w") as f:
        json.dump(golden, f)
        f.write("\n")
    if args.wide:
        print(f"wrote {path} ({os.path.getsize(path)} bytes), {variant['golden']}")
        return

    # One row per line keeps the request readable.
    rows_json = ",\n".join("        " + json.dumps([float(v) for v in row]) for row in x_test[:2])
    with open(os.path.join(out, "request.json"), "w") as f:
        f.write('{\n  "inputs": [\n    {\n      "name": "input",\n      "shape": [2, 64],\n')
        f.write('      "datatype": "FP32",\n      "data": [\n' + rows_json + "\n      ]\n    }\n  ]\n}\n")
    print(f"wrote {path} ({os.path.getsize(path)} bytes), golden.json, request.json")


if __name__ == "__main__":
    main()
