#!/usr/bin/python3
"""Writes the golden ONNX models of internal/engine/onnx/testdata/golden.

Each exercises one case of issue 11 that once broke ebb's onnx engine; the
engine, server and e2e tests load them. They are a few hundred bytes each
(costly.onnx 2 KiB).

  scalars.onnx    exported by PyTorch from x.sum(), x.mean() and x * 2:
                    x FP32 [batch, 3] -> sum FP32 [], mean FP32 [],
                                         twice FP32 [batch, 3]
  no_inputs.onnx  no inputs; constant outputs:
                    answer INT64 [] = 42, seq FP32 [3] = [1, 2, 3]
  any_shape.onnx  an input declared without a shape:
                    x FP32 (no shape) -> y = x (no shape), n INT64 [] = Size(x)
  scalar_string.onnx
                  s BYTES [] -> echo BYTES [] = s
  datatypes.onnx  one input per datatype the older engine refused, each
                  [batch, 2], passed through (Identity) and, for the
                  floating-point and uint8 ones, cast to FP32 so values can
                  be checked across the type boundary:
                    u8, i8, i16, u16, u32, u64, f16, bf16 -> <name>_out
                    u8 -> u8_f32, f16 -> f16_f32, bf16 -> bf16_f32
  nan_inf.onnx    x FP32 [batch] -> same = x, log = Log(x)
                  (NaN for x < 0, -Inf for 0)
  outputs.onnx    x FP32 [batch] -> ok = x, twice = x * 2: a request may ask
                  for either alone
  fails.onnx      x FP32 [batch] -> bad = Reshape(x, Shape(x) - 7), which
                  fails in ONNX Runtime on every run (a negative dimension):
                  the error must be ONNX Runtime's, naming the inputs
  branches.onnx   x FP32 [batch] -> plus = 2x + 1, via_if = an If whose
                  branch reads 3x from the outer graph, bad = Reshape(x,
                  Shape(x) - 7), which fails on every run as in fails.onnx:
                  a request for plus and via_if alone succeeds only if
                  ebb computes only what they need (issue 11)
  costly.onnx     x FP32 [batch, 128] -> cheap = ReduceSum(x, axis 1),
                  costly = 32 times Tanh(h @ W), W [128, 128] computed in
                  the graph (ONNX Runtime folds it when loading): the
                  benchmark of one output against all
  external.onnx   x FP32 [batch, 4] -> y = x @ W, z = x + 1, with W [4, 4]
                  (0 to 15 row by row) in external.onnx.data, the file
                  ONNX's external data format names: pruned copies of the
                  model, which ONNX Runtime loads from memory, must find it
  sequence.onnx   an input that is a sequence of tensors, which ebb refuses
                  to load, naming the input and its kind

Run with Debian's interpreter, which has python3-torch and python3-onnx:
  /usr/bin/python3 hack/gen-onnx-golden.py [model ...]
Naming models (branches costly external) writes only those; other versions of
PyTorch may export the others differently.
"""

import os
import sys

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "internal", "engine", "onnx", "testdata", "golden")
OPSET = 13
vi = helper.make_tensor_value_info


def save(graph, name, check=True):
    """Saves graph as a model. check=False skips onnx's checker, which
    insists that graph inputs and outputs declare a shape; ONNX itself and
    ONNX Runtime do not, and exporters write such models."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="ebb-golden")
    model.ir_version = 8
    if check:
        onnx.checker.check_model(model)
    onnx.save(model, os.path.join(OUT, name))


def scalars():
    class Scalars(torch.nn.Module):
        def forward(self, x):
            return x.sum(), x.mean(), x * 2

    path = os.path.join(OUT, "scalars.onnx")
    torch.onnx.export(
        Scalars(), torch.zeros(2, 3), path,
        input_names=["x"], output_names=["sum", "mean", "twice"],
        dynamic_axes={"x": {0: "batch"}, "twice": {0: "batch"}},
        opset_version=OPSET,
    )
    model = onnx.load(path)
    model.producer_name = "ebb-golden"
    onnx.checker.check_model(model)
    onnx.save(model, path)


def no_inputs():
    answer = numpy_helper.from_array(np.array(42, dtype=np.int64), "answer_value")
    seq = numpy_helper.from_array(np.array([1, 2, 3], dtype=np.float32), "seq_value")
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["answer"], value=answer),
         helper.make_node("Constant", [], ["seq"], value=seq)],
        "no_inputs", [],
        [vi("answer", TensorProto.INT64, []), vi("seq", TensorProto.FLOAT, [3])],
    )
    save(graph, "no_inputs.onnx")


def any_shape():
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"]), helper.make_node("Size", ["x"], ["n"])],
        "any_shape",
        [vi("x", TensorProto.FLOAT, None)],
        [vi("y", TensorProto.FLOAT, None), vi("n", TensorProto.INT64, [])],
    )
    save(graph, "any_shape.onnx", check=False)


def scalar_string():
    graph = helper.make_graph(
        [helper.make_node("Identity", ["s"], ["echo"])],
        "scalar_string",
        [vi("s", TensorProto.STRING, [])],
        [vi("echo", TensorProto.STRING, [])],
    )
    save(graph, "scalar_string.onnx")


def datatypes():
    types = [
        ("u8", TensorProto.UINT8), ("i8", TensorProto.INT8), ("i16", TensorProto.INT16),
        ("u16", TensorProto.UINT16), ("u32", TensorProto.UINT32), ("u64", TensorProto.UINT64),
        ("f16", TensorProto.FLOAT16), ("bf16", TensorProto.BFLOAT16),
    ]
    nodes, inputs, outputs = [], [], []
    for name, t in types:
        inputs.append(vi(name, t, ["batch", 2]))
        outputs.append(vi(name + "_out", t, ["batch", 2]))
        nodes.append(helper.make_node("Identity", [name], [name + "_out"]))
    for name in ("u8", "f16", "bf16"):
        outputs.append(vi(name + "_f32", TensorProto.FLOAT, ["batch", 2]))
        nodes.append(helper.make_node("Cast", [name], [name + "_f32"], to=TensorProto.FLOAT))
    save(helper.make_graph(nodes, "datatypes", inputs, outputs), "datatypes.onnx")


def nan_inf():
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["same"]), helper.make_node("Log", ["x"], ["log"])],
        "nan_inf",
        [vi("x", TensorProto.FLOAT, ["batch"])],
        [vi("same", TensorProto.FLOAT, ["batch"]), vi("log", TensorProto.FLOAT, ["batch"])],
    )
    save(graph, "nan_inf.onnx")


def outputs():
    two = numpy_helper.from_array(np.array(2, dtype=np.float32), "two")
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["ok"]), helper.make_node("Mul", ["x", "two"], ["twice"])],
        "outputs",
        [vi("x", TensorProto.FLOAT, ["batch"])],
        [vi("ok", TensorProto.FLOAT, ["batch"]), vi("twice", TensorProto.FLOAT, ["batch"])],
        initializer=[two],
    )
    save(graph, "outputs.onnx")


def fails():
    seven = numpy_helper.from_array(np.array([7], dtype=np.int64), "seven")
    graph = helper.make_graph(
        [helper.make_node("Shape", ["x"], ["x_shape"]),
         helper.make_node("Sub", ["x_shape", "seven"], ["bad_shape"]),
         helper.make_node("Reshape", ["x", "bad_shape"], ["bad"])],
        "fails",
        [vi("x", TensorProto.FLOAT, ["batch"])],
        [vi("bad", TensorProto.FLOAT, None)],
        initializer=[seven],
    )
    save(graph, "fails.onnx", check=False)


def sequence_input():
    graph = helper.make_graph(
        [helper.make_node("SequenceLength", ["seq"], ["length"])],
        "sequence",
        [helper.make_tensor_sequence_value_info("seq", TensorProto.FLOAT, ["n"])],
        [vi("length", TensorProto.INT64, [])],
    )
    save(graph, "sequence.onnx")


def branches():
    def const(name, value, dtype):
        return numpy_helper.from_array(np.array(value, dtype=dtype), name)

    then_branch = helper.make_graph(
        [helper.make_node("Identity", ["tripled"], ["then_out"])], "then", [], [vi("then_out", TensorProto.FLOAT, None)])
    else_branch = helper.make_graph(
        [helper.make_node("Neg", ["tripled"], ["else_out"])], "else", [], [vi("else_out", TensorProto.FLOAT, None)])
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["doubled"]),
         helper.make_node("Add", ["doubled", "one"], ["plus"]),
         helper.make_node("Mul", ["x", "three"], ["tripled"]),
         helper.make_node("If", ["yes"], ["via_if"], then_branch=then_branch, else_branch=else_branch),
         helper.make_node("Shape", ["x"], ["x_shape"]),
         helper.make_node("Sub", ["x_shape", "seven"], ["bad_shape"]),
         helper.make_node("Reshape", ["x", "bad_shape"], ["bad"])],
        "branches",
        [vi("x", TensorProto.FLOAT, ["batch"])],
        [vi("plus", TensorProto.FLOAT, ["batch"]), vi("via_if", TensorProto.FLOAT, ["batch"]),
         vi("bad", TensorProto.FLOAT, None)],
        initializer=[const("one", 1, np.float32), const("two", 2, np.float32), const("three", 3, np.float32),
                     const("seven", [7], np.int64), const("yes", True, np.bool_)],
    )
    save(graph, "branches.onnx", check=False)


def costly():
    width, layers = 128, 32
    nodes = [
        helper.make_node("Range", ["zero", "count", "step"], ["w_flat"]),
        helper.make_node("Cos", ["w_flat"], ["w_cos"]),
        helper.make_node("Reshape", ["w_cos", "w_shape"], ["w_square"]),
        helper.make_node("Mul", ["w_square", "w_scale"], ["w"]),
        helper.make_node("ReduceSum", ["x", "axis1"], ["cheap"], keepdims=0),
    ]
    h = "x"
    for i in range(layers):
        out = "costly" if i == layers - 1 else "h%d" % (i + 1)
        nodes.append(helper.make_node("MatMul", [h, "w"], ["m%d" % (i + 1)]))
        nodes.append(helper.make_node("Tanh", ["m%d" % (i + 1)], [out]))
        h = out
    inits = [
        numpy_helper.from_array(np.array(0, dtype=np.float32), "zero"),
        numpy_helper.from_array(np.array(width * width, dtype=np.float32), "count"),
        numpy_helper.from_array(np.array(1, dtype=np.float32), "step"),
        numpy_helper.from_array(np.array([width, width], dtype=np.int64), "w_shape"),
        numpy_helper.from_array(np.array(1 / np.sqrt(width), dtype=np.float32), "w_scale"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
    ]
    graph = helper.make_graph(
        nodes, "costly",
        [vi("x", TensorProto.FLOAT, ["batch", width])],
        [vi("cheap", TensorProto.FLOAT, ["batch"]), vi("costly", TensorProto.FLOAT, ["batch", width])],
        initializer=inits,
    )
    save(graph, "costly.onnx")


def external():
    w = numpy_helper.from_array(np.arange(16, dtype=np.float32).reshape(4, 4), "w")
    one = numpy_helper.from_array(np.array(1, dtype=np.float32), "one")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("Add", ["x", "one"], ["z"])],
        "external",
        [vi("x", TensorProto.FLOAT, ["batch", 4])],
        [vi("y", TensorProto.FLOAT, ["batch", 4]), vi("z", TensorProto.FLOAT, ["batch", 4])],
        initializer=[w, one],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="ebb-golden")
    model.ir_version = 8
    onnx.checker.check_model(model)
    data = os.path.join(OUT, "external.onnx.data")
    if os.path.exists(data):
        os.remove(data)  # onnx.save appends to it
    onnx.save(model, os.path.join(OUT, "external.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="external.onnx.data", size_threshold=64)


MODELS = {
    "scalars": scalars, "no_inputs": no_inputs, "any_shape": any_shape, "scalar_string": scalar_string,
    "datatypes": datatypes, "nan_inf": nan_inf, "outputs": outputs, "fails": fails,
    "sequence": sequence_input, "branches": branches, "costly": costly,
    "external": external,
}

if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    unknown = [n for n in sys.argv[1:] if n not in MODELS]
    if unknown:
        sys.exit("unknown model(s) %s: choose from %s" % (", ".join(unknown), ", ".join(MODELS)))
    for name in sys.argv[1:] or MODELS:
        MODELS[name]()
