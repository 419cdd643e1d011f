"""The class ebb's python engine serves for this example (spec.python.class
"model.py:Model"): it loads the pipeline train.py fitted and predicts with it.

ebb's python engine runs it in worker processes: each calls
Model().load(path) once, with the absolute path of spec.model
(model.joblib), then predict(inputs) for the requests ebb's server hands it,
where inputs maps each OIP v2 input name to a numpy array shaped as the
request declared (with spec.batching, the rows of several requests at once).
The server answers with the arrays predict returns.
"""

import joblib
import numpy as np

# The pipeline's column layout, shared with train.py so training and serving
# build the same matrix.
N_FEATURES = 10
CLINICS = ("north", "south", "east", "west")


def to_matrix(features, clinic):
    """Returns the pipeline's input: the numeric features in columns 0-9 and
    the clinic name in column 10, in one object array (no pandas needed)."""
    features = np.asarray(features, dtype=np.float64)
    clinic = np.asarray(clinic, dtype=object)
    x = np.empty((features.shape[0], N_FEATURES + 1), dtype=object)
    x[:, :N_FEATURES] = features
    x[:, N_FEATURES] = clinic
    return x


class Model:
    def load(self, path):
        self.pipeline = joblib.load(path)

    def metadata(self):
        return {
            "platform": "sklearn",
            "inputs": [
                {"name": "features", "datatype": "FP64", "shape": [-1, N_FEATURES]},
                {"name": "clinic", "datatype": "BYTES", "shape": [-1]},
            ],
            "outputs": [{"name": "predict", "datatype": "FP64", "shape": [-1]}],
        }

    def predict(self, inputs):
        features, clinic = inputs["features"], inputs["clinic"]
        if len(features) != len(clinic):
            e = ValueError("features has %d rows but clinic has %d: send one clinic per row" % (len(features), len(clinic)))
            e.http_status = 400  # the request's fault: ebb answers 400, not 500
            raise e
        return {"predict": self.pipeline.predict(to_matrix(features, clinic))}
