"""The diabetes model behind FastAPI (run under uvicorn with uvloop and
httptools), speaking OIP v2 JSON."""
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

import model

app = FastAPI()


@app.get("/v2/health/ready")
async def ready():
    return Response(status_code=200)


@app.post("/v2/models/{name}/infer")
async def infer(name: str, request: Request):
    try:
        return JSONResponse(model.infer(await request.json()))
    except model.BadRequest as e:
        return JSONResponse({"error": str(e)}, status_code=400)
