#!/usr/bin/python3
"""Writes the small hand-built ONNX graphs the onnx engine's tests load.

  types.onnx    one input and output per datatype ebb serves:
                  f32  FP32 [-1, 2]  -> f32_twice = f32 * 2
                  f64  FP64 [-1]     -> f64_out   = f64
                  i32  INT32 [-1]    -> i32_out   = i32
                  i64  INT64 [2, -1] -> i64_out   = i64
                  b    BOOL [-1]     -> b_not     = not b
                  s    BYTES [-1]    -> s_upper   = upper(s)  (StringNormalizer:
                                        needs the en_US.UTF-8 locale)
  float16.onnx  a float16 input and output (once refused at load; served
                since issue 11, whose models hack/gen-onnx-golden.py writes).

Run with Debian's interpreter (apt-get install -y python3-onnx):
  /usr/bin/python3 internal/engine/onnx/testdata/gen.py
"""

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))


def save(graph, name):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="ebb-testdata")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(HERE, name))


def types():
    vi = helper.make_tensor_value_info
    inputs = [
        vi("f32", TensorProto.FLOAT, ["batch", 2]),
        vi("f64", TensorProto.DOUBLE, ["n"]),
        vi("i32", TensorProto.INT32, [None]),
        vi("i64", TensorProto.INT64, [2, "m"]),
        vi("b", TensorProto.BOOL, ["k"]),
        vi("s", TensorProto.STRING, ["j"]),
    ]
    outputs = [
        vi("f32_twice", TensorProto.FLOAT, ["batch", 2]),
        vi("f64_out", TensorProto.DOUBLE, ["n"]),
        vi("i32_out", TensorProto.INT32, [None]),
        vi("i64_out", TensorProto.INT64, [2, "m"]),
        vi("b_not", TensorProto.BOOL, ["k"]),
        vi("s_upper", TensorProto.STRING, ["j"]),
    ]
    two = numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two")
    nodes = [
        helper.make_node("Mul", ["f32", "two"], ["f32_twice"]),
        helper.make_node("Identity", ["f64"], ["f64_out"]),
        helper.make_node("Identity", ["i32"], ["i32_out"]),
        helper.make_node("Identity", ["i64"], ["i64_out"]),
        helper.make_node("Not", ["b"], ["b_not"]),
        helper.make_node("StringNormalizer", ["s"], ["s_upper"], case_change_action="UPPER"),
    ]
    save(helper.make_graph(nodes, "types", inputs, outputs, initializer=[two]), "types.onnx")


def float16():
    vi = helper.make_tensor_value_info
    graph = helper.make_graph(
        [helper.make_node("Identity", ["half"], ["out"])],
        "float16",
        [vi("half", TensorProto.FLOAT16, ["batch", 4])],
        [vi("out", TensorProto.FLOAT16, ["batch", 4])],
    )
    save(graph, "float16.onnx")


if __name__ == "__main__":
    types()
    float16()
