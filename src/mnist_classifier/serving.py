"""The web app that serve.py runs: a page to draw a digit on, and a JSON API that reads a digit in an
uploaded image through the same preprocessing and model as predict.py (handwriting.read_digits).

    GET  /             the page: draw a digit with the mouse or a finger, or choose a photo; it shows
                       the label, the three likeliest with their probabilities, and the 28x28 the net saw
    POST /api/predict  an image file as the multipart form field `image` ->
                       {"label": "7", "probability": 0.98, "top": [{"label": ..., "probability": ...}, x3],
                        "input": "data:image/png;base64,..."}  (the 28x28 the net saw)

A bad request is answered with a 4xx status and {"detail": "<one line>"}: 422 for an upload that is no
image or has no digit (with predict.py's messages) or a request without the `image` field, 413 for a
body over the size limit. Each request is on its own: the server goes on serving.
"""

import base64
import io
from importlib.resources import files

import torch
from fastapi import FastAPI, Request, UploadFile
from fastapi.exceptions import HTTPException, RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from PIL import Image
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mnist_classifier.errors import BadInput
from mnist_classifier.handwriting import Reading, read_digits
from mnist_classifier.inference import InferenceModel

TOP = 3  # the likeliest labels an answer gives
MAX_UPLOAD_BYTES = 20 * 2**20  # a phone's photo, with room to spare
UNPROCESSABLE = 422  # a request understood, but not usable: no image, no digit, no `image` field


def too_large(max_bytes: int) -> str:
    return f"the request is invalid: its body is over the limit of {max_bytes:,} bytes"


class BodyLimit:
    """ASGI middleware refusing a request body over `max_bytes` with 413: at once when its Content-Length
    declares more, else as soon as more has arrived (a chunked body declares no length)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            response = JSONResponse({"detail": too_large(self.max_bytes)}, status_code=413)
            await response(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:  # raised where the app reads the body: its handler answers
                raise HTTPException(413, too_large(self.max_bytes))
            return message

        await self.app(scope, counted, send)


def png_data_url(digits: torch.Tensor) -> str:
    """uint8 digits [N, 28, 28] side by side as a PNG in a data: URL, for an <img> to show."""
    file = io.BytesIO()
    Image.fromarray(torch.cat(list(digits), dim=1).numpy()).save(file, "PNG")
    return "data:image/png;base64," + base64.b64encode(file.getvalue()).decode()


def answer(reading: Reading) -> dict:
    """The API's answer for a digit read: its label and probability, the likeliest labels, and what the
    net saw."""
    guesses = [{"label": guess.label, "probability": guess.probability} for guess in reading.top]
    return {**guesses[0], "top": guesses, "input": png_data_url(reading.seen)}


def create_app(model: InferenceModel, max_upload_bytes: int = MAX_UPLOAD_BYTES) -> FastAPI:
    """The page and the API, reading digits with `model`; request bodies over `max_upload_bytes` are
    refused."""
    app = FastAPI(title="Read a handwritten digit", docs_url=None, redoc_url=None)
    app.add_middleware(BodyLimit, max_bytes=max_upload_bytes)
    page = (files("mnist_classifier") / "page" / "index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    # a plain def: FastAPI runs it in a worker thread, so decoding a large photo blocks no other request
    @app.post("/api/predict")
    def predict(image: UploadFile) -> dict:
        (reading,) = read_digits(model, [(image.filename or "the upload", image.file.read())], TOP)
        if isinstance(reading, BadInput):
            raise reading
        return answer(reading)

    @app.exception_handler(BadInput)
    def bad_upload(request: Request, error: BadInput) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=UNPROCESSABLE)

    @app.exception_handler(RequestValidationError)
    def bad_request(request: Request, error: RequestValidationError) -> JSONResponse:
        detail = "the request is invalid: send an image file as the multipart form field `image`"
        return JSONResponse({"detail": detail}, status_code=UNPROCESSABLE)

    return app
