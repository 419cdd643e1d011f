"""The diabetes model behind Flask (run under gunicorn), speaking OIP v2 JSON."""
from flask import Flask, jsonify, request

import model

app = Flask(__name__)


@app.get("/v2/health/ready")
def ready():
    return "", 200


@app.post("/v2/models/<name>/infer")
def infer(name):
    try:
        return jsonify(model.infer(request.get_json(force=True)))
    except model.BadRequest as e:
        return jsonify({"error": str(e)}), 400
