"""A test model with one input of each datatype it declares: echoes each as
NAME_out and says, in "kind", what type predict received for "s"."""

TYPES = {
    "b": "BOOL", "i8": "INT8", "i16": "INT16", "i32": "INT32", "i64": "INT64",
    "u8": "UINT8", "u16": "UINT16", "u32": "UINT32", "u64": "UINT64",
    "f16": "FP16", "bf16": "BF16", "f32": "FP32", "f64": "FP64", "s": "BYTES",
}


class Model:
    def metadata(self):
        return {
            "platform": "test",
            "inputs": [{"name": n, "datatype": dt, "shape": [-1, 2]} for n, dt in TYPES.items()],
            "outputs": [{"name": n + "_out", "datatype": dt, "shape": [-1, 2]} for n, dt in TYPES.items()]
            + [{"name": "kind", "datatype": "BYTES", "shape": [-1]}],
        }

    def predict(self, inputs):
        out = {n + "_out": v for n, v in inputs.items()}
        out["kind"] = [type(inputs["s"]).__module__] * len(inputs["s"])
        return out
