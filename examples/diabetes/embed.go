// Package diabetes is ebb's demo model: an XGBoost regressor trained by
// train.py on scikit-learn's diabetes dataset (10 features, predicting disease
// progression), embedded so that `ebb up --demo` can deploy it from the
// binary alone.
package diabetes

import _ "embed"

// Model is model.json: the booster as written by Booster.save_model, for the
// trees engine. Input "input" is FP32 [-1, 10]; output "predict" is FP32 [-1].
//
//go:embed model.json
var Model []byte

// Request is request.json: an OIP v2 infer request body with two rows.
//
//go:embed request.json
var Request []byte
