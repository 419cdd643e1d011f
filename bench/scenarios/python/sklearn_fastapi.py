"""examples/sklearn-python's class behind FastAPI (run under uvicorn with
uvloop and httptools), speaking OIP v2 JSON: the same model served the way a
user would serve it without ebb. $EBB_BENCH_SKLEARN_DIR is the example's
directory."""
import importlib.util
import os
import sys

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

EXAMPLE = os.environ["EBB_BENCH_SKLEARN_DIR"]

# Imported as "model", the name the pickled pipeline and ebb's worker use.
_spec = importlib.util.spec_from_file_location("model", os.path.join(EXAMPLE, "model.py"))
_module = importlib.util.module_from_spec(_spec)
sys.modules["model"] = _module
_spec.loader.exec_module(_module)

model = _module.Model()
model.load(os.path.join(EXAMPLE, "model.joblib"))

DTYPES = {"BOOL": np.bool_, "INT32": np.int32, "INT64": np.int64, "FP32": np.float32, "FP64": np.float64, "BYTES": object}
DATATYPES = {"b": "BOOL", "i": "INT64", "u": "INT64", "f": "FP64"}

app = FastAPI()


@app.get("/v2/health/ready")
async def ready():
    return Response(status_code=200)


@app.post("/v2/models/{name}/infer")
async def infer(name: str, request: Request):
    try:
        body = await request.json()
        # JSON null in a float input is a missing value: numpy makes it NaN.
        inputs = {t["name"]: np.array(t["data"], dtype=DTYPES[t["datatype"]]).reshape(t["shape"]) for t in body["inputs"]}
    except (KeyError, TypeError, ValueError) as e:
        return JSONResponse({"error": "malformed OIP v2 request: %s" % e}, status_code=400)
    try:
        out = model.predict(inputs)
    except ValueError as e:
        return JSONResponse({"error": str(e)}, status_code=400)
    outputs = [{"name": k, "datatype": DATATYPES.get(v.dtype.kind, "BYTES"), "shape": list(v.shape), "data": v.tolist()}
               for k, v in out.items()]
    return JSONResponse({"model_name": name, "outputs": outputs})
