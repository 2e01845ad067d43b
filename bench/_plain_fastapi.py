"""The baseline of bench/serve.py: the plain FastAPI + uvicorn app every model server is measured
against (LitServe's CI runs the same parity test), calling the same stillhouse predictor.

Run: ``python bench/_plain_fastapi.py MODEL_DIR PORT THREADS``."""

import sys

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

from stillhouse.train import load_model

model = load_model(sys.argv[1], threads=int(sys.argv[3]))
app = FastAPI()


class Request(BaseModel):
    text: str


@app.post("/v1/predict")
def predict(request: Request) -> dict:  # a plain `def`: FastAPI runs it on its thread pool
    prediction = model.predict([request.text])[0]
    return {"label": prediction.answer, "probs": prediction.probs}


@app.get("/healthz")
def healthz() -> dict:
    return {"status": "alive"}


uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
