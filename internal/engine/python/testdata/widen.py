"""A test model without metadata() whose outputs have every numpy dtype
ebb's datatypes name: each is sent as is when the replica carries its
datatype, else as the nearest wider one it carries. With input "big", it
returns a uint64 too large for INT64."""

import numpy as np


class Model:
    def predict(self, inputs):
        if "big" in inputs:
            return {"u64": np.array([2**64 - 1], np.uint64)}
        return {
            "i8": np.array([-128, 127], np.int8),
            "i16": np.array([-32768], np.int16),
            "u8": np.array([0, 255], np.uint8),
            "u16": np.array([65535], np.uint16),
            "u32": np.array([4294967295], np.uint32),
            "u64": np.array([2**63 - 1], np.uint64),
            "f16": np.array([1.5, -2], np.float16),
            "f64": np.array([0.1], np.float64),
            "b": np.array([True], np.bool_),
            "s": np.array(["x"]),
        }
