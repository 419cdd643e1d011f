"""A test model in PyTorch: y = x @ W.T + b with fixed weights; predict
returns a tensor (served as FP32)."""

import torch


class Model:
    def load(self, path):
        self.net = torch.nn.Linear(3, 2)
        with torch.no_grad():
            self.net.weight.copy_(torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]]))
            self.net.bias.copy_(torch.tensor([0.5, -0.5]))
        self.net.eval()

    def metadata(self):
        return {
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}],
            "outputs": [{"name": "predict", "datatype": "FP32", "shape": [-1, 2]}],
        }

    def predict(self, inputs):
        return self.net(torch.from_numpy(inputs["x"]))
