#!/usr/bin/python3
"""Trains a small PyTorch MLP on scikit-learn's digits dataset and exports it
to ONNX for ebb's onnx engine.

Writes, next to this script:
  model.onnx    the network: input "input" FP32 [batch, 64] (8x8 pixel
                intensities 0..16), outputs "logits" and "probabilities"
                FP32 [batch, 10]; the batch dimension is dynamic.
  golden.json   recorded inputs and PyTorch's outputs for them, at full
                precision, which ebb's tests compare ONNX Runtime against.
  request.json  an OIP v2 infer request with two rows.

Needs Debian's packages (no downloads; the dataset ships with sklearn):
  apt-get install -y python3-torch python3-onnx python3-sklearn
and Debian's interpreter: /usr/bin/python3 examples/mlp-onnx/export.py
"""

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


class MLP(torch.nn.Module):
    """64 -> 128 -> 64 -> 10 with ReLU; returns logits and softmax."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(64, 128),
            torch.nn.ReLU(),
            torch.nn.Linear(128, 64),
            torch.nn.ReLU(),
            torch.nn.Linear(64, 10),
        )

    def forward(self, x):
        # Scale pixel intensities 0..16 to 0..1 inside the graph, so clients
        # send the raw features.
        logits = self.net(x / 16.0)
        return logits, torch.softmax(logits, dim=1)


def train(model, x, y):
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = torch.nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(SEED)
    for _ in range(30):
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
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data.astype(np.float32), digits.target, test_size=0.25, random_state=SEED
    )
    xt = torch.from_numpy(x_train)
    yt = torch.from_numpy(y_train).long()
    model = MLP()
    train(model, xt, yt)
    model.eval()

    with torch.no_grad():
        _, probs = model(torch.from_numpy(x_test))
    accuracy = float((probs.argmax(dim=1).numpy() == y_test).mean())
    print(f"test accuracy: {accuracy:.4f}")

    path = os.path.join(HERE, "model.onnx")
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
        "model": "model.onnx",
        "exporter": f"torch {torch.__version__}, onnx {onnx.__version__}, opset 13",
        "dataset": "sklearn.datasets.load_digits, test split (random_state=0)",
        "test_accuracy": accuracy,
        "labels": [int(v) for v in y_test[:GOLDEN_ROWS]],
        "inputs": {"input": tensor_json(rows)},
        "outputs": {"logits": tensor_json(logits), "probabilities": tensor_json(probs)},
    }
    with open(os.path.join(HERE, "golden.json"), "w") as f:
        json.dump(golden, f)
        f.write("\n")

    # One row per line keeps the request readable.
    rows_json = ",\n".join("        " + json.dumps([float(v) for v in row]) for row in x_test[:2])
    with open(os.path.join(HERE, "request.json"), "w") as f:
        f.write('{\n  "inputs": [\n    {\n      "name": "input",\n      "shape": [2, 64],\n')
        f.write('      "datatype": "FP32",\n      "data": [\n' + rows_json + "\n      ]\n    }\n  ]\n}\n")
    print(f"wrote {path} ({os.path.getsize(path)} bytes), golden.json, request.json")


if __name__ == "__main__":
    main()
