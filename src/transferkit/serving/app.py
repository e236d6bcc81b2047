"""The HTTP server of `transferkit serve`: FastAPI, dynamic batching, and a web page.

`create_app(predictor)` returns a FastAPI app over any `Predictor` (Keras or ONNX Runtime):

* `POST /predict`: images as `multipart/form-data` files in the field `files` (repeatable), for
  image models; `application/json` `{"texts": [...]}` for text models. Answers
  `[{"label", "score", "scores": {class: probability}}]`, one per input, in request order.
* `GET /health`, `GET /metadata` (the model's facts and the server's limits), `GET /card` (the
  model card, markdown), `GET /` (the web page), and FastAPI's `/docs` and `/openapi.json`.

Every bad request is answered `{"error": "what was wrong and how to fix it"}` with a 4xx status,
and the server keeps serving. Bodies are read up to `max_upload_bytes` and no further (a
`Content-Length` over it is refused before reading); an image's size is read from its header and
checked against `max_pixels` before it is decoded. Uploads are decoded exactly as training decodes
files (`transferkit.data.images`: EXIF orientation, RGB, the model's resize policy), in a thread
pool, never on the event loop nor in the model's thread; `DynamicBatcher` groups concurrent
requests into one model call.

`serve(model)` loads a model and runs the app on uvicorn until Ctrl+C.
"""

# ruff: noqa: E402 - FastAPI is an extra: `require` says how to install it before the imports.

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import io
import json
import logging
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from transferkit.errors import InputError
from transferkit.extras import require
from transferkit.serving import MAX_BATCH, MAX_WAIT_MS

require("fastapi", "Serving models (`transferkit serve`)")
require("python_multipart", "Reading image uploads (`transferkit serve`)")

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from transferkit.serving.batching import DynamicBatcher

__all__ = ["create_app", "serve", "background_server", "decode_image", "Limits", "RequestError"]

logger = logging.getLogger("transferkit.serving")

STATIC = Path(__file__).resolve().parent / "static"
IMAGE_FORMATS = "JPEG, PNG, BMP, GIF or WebP"
HOW_TO_SEND = {
    "image": "send images as multipart/form-data files in the field `files` "
             "(curl -F files=@photo.jpg URL/predict)",
    "text": "send JSON {\"texts\": [\"first text\", ...]} with Content-Type: application/json",
}


class RequestError(InputError):
    """A request the server refuses: `status` is its HTTP status, the message says how to fix it."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """What one request may hold. Every field is a positive int.

    Attributes:
        max_upload_bytes: the most bytes in one request body (all files together). 20 MiB.
        max_pixels: the most pixels (width x height) in one image, read from its header before
            decoding. 40 million.
        max_files: the most images in one request. 64.
        max_texts: the most texts in one request. 256.
        max_text_chars: the most characters in one text. 20,000.
    """

    max_upload_bytes: int = 20 * 2**20
    max_pixels: int = 40_000_000
    max_files: int = 64
    max_texts: int = 256
    max_text_chars: int = 20_000

    def __post_init__(self):
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"`{name}` must be a positive int. Received: {name}={value!r}.")


# -- decoding uploads ------------------------------------------------------------------------


def decode_image(
    data: bytes, image_size, policy: str, *, max_pixels: int, name: str = "the image"
) -> np.ndarray:
    """Decodes an uploaded image for a model, as `transferkit.data.images.load_resized` decodes a
    file: EXIF orientation, any mode to RGB, JPEG draft scaling, then the model's resize.

    Args:
        data: the file's bytes.
        image_size: `(height, width)` of the model's input.
        policy: `"center_crop"` or `"stretch"`.
        max_pixels: refuse images with more pixels than this, before decoding them.
        name: how messages name the image (`files[0] 'cat.jpg'`).

    Returns:
        An RGB `uint8` array `(height, width, 3)`.

    Raises:
        RequestError: 415 not an image; 413 too many pixels; 400 corrupt or truncated.
    """
    from PIL import Image, UnidentifiedImageError

    from transferkit.data.images import _resize_pil, decode_rgb

    size = (int(image_size[0]), int(image_size[1]))
    too_big = (
        f"{name}: is larger than this server takes ({max_pixels:,} pixels). Resize it (for "
        f"example to {max(size) * 4} pixels on its longer side) and send it again."
    )
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise RequestError(
            415, f"{name}: is not an image Pillow can read. Send {IMAGE_FORMATS} files."
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise RequestError(413, too_big) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise RequestError(400, f"{name}: the image is corrupt ({exc}). Send it again.") from None
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise RequestError(413, too_big.replace(" (", f" ({width}x{height}; at most ", 1))
        try:
            rgb = decode_rgb(image, draft=size)  # as load_resized decodes files: same pixels
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise RequestError(
                400, f"{name}: the image is corrupt or truncated ({exc}). Send the whole file, "
                "or re-export it."
            ) from None
    return np.asarray(_resize_pil(rgb, size, policy), dtype=np.uint8)


def _parse_texts(body: bytes, limits: Limits) -> list[str]:
    """The texts of a JSON body `{"texts": [...]}`, checked."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"The body is not valid JSON ({exc}); {HOW_TO_SEND['text']}.") \
            from None
    if not isinstance(payload, dict) or "texts" not in payload:
        raise RequestError(400, f"The JSON has no \"texts\" list; {HOW_TO_SEND['text']}.")
    texts = payload["texts"]
    if isinstance(texts, str):
        raise RequestError(
            400, "\"texts\" is one string; it must be a list of strings: {\"texts\": [\"...\"]}."
        )
    if not isinstance(texts, list):
        raise RequestError(
            400, f"\"texts\" is a {type(texts).__name__}; it must be a list of strings."
        )
    if not texts:
        raise RequestError(400, "\"texts\" is empty: send at least one text.")
    if len(texts) > limits.max_texts:
        raise RequestError(
            413, f"{len(texts):,} texts in one request; this server takes at most "
            f"{limits.max_texts:,}. Send them in several requests."
        )
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise RequestError(
                400, f"texts[{index}] is a {type(text).__name__}; every text must be a string."
            )
        if not text.strip():
            raise RequestError(400, f"texts[{index}] is empty: send text to classify.")
        if len(text) > limits.max_text_chars:
            raise RequestError(
                413, f"texts[{index}] has {len(text):,} characters; this server takes at most "
                f"{limits.max_text_chars:,} per text. Shorten it."
            )
    return texts


# -- the state of one app, and its endpoints -------------------------------------------------


@dataclass
class _Serving:
    predictor: object
    batcher: DynamicBatcher
    limits: Limits
    decode_pool: concurrent.futures.ThreadPoolExecutor
    started: float


def _state(request: Request) -> _Serving:
    return request.app.state.serving


def _content_kind(request: Request, task: str) -> str:
    """`"image"` for multipart bodies, `"text"` for JSON ones; refuses other types (415) and the
    kind this model does not take (400)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    kind = {"multipart/form-data": "image", "application/json": "text"}.get(content_type)
    if kind is None:
        shown = f"Content-Type {content_type!r}" if content_type else "no Content-Type"
        raise RequestError(415, f"The request has {shown}; {HOW_TO_SEND[task]}.")
    if kind != task:
        sent = "images" if kind == "image" else "texts"
        raise RequestError(
            400, f"This model classifies {task}s and the request sent {sent}; "
            f"{HOW_TO_SEND[task]}."
        )
    return kind


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed `limit` bytes: from
    `Content-Length` before reading, or while reading (chunked bodies). Uvicorn discards the
    rest of a refused body."""
    too_large = (
        f"The request is larger than this server takes ({limit:,} bytes). Send fewer or smaller "
        "files per request."
    )
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise RequestError(400, f"Content-Length {declared!r} is not a number of bytes.")
        if int(declared) > limit:
            raise RequestError(413, too_large.replace(" (", f" ({int(declared):,} bytes; at most "))
    chunks, total = [], 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise RequestError(413, too_large)
            chunks.append(chunk)
    except ClientDisconnect:
        raise RequestError(400, "The client closed the connection before sending the body.") \
            from None
    return b"".join(chunks)


async def _read_images(request: Request, body: bytes, state: _Serving) -> list[np.ndarray]:
    """The uploaded files of a multipart body, decoded for the model in the thread pool."""
    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    limits = state.limits
    try:
        form = await Request(request.scope, replay).form(
            max_files=limits.max_files, max_fields=limits.max_files
        )
    except HTTPException as exc:
        if "Too many" in str(exc.detail):
            raise RequestError(
                413, f"The request holds more than {limits.max_files} files; this server takes "
                f"at most {limits.max_files} files per request. Send them in several requests."
            ) from None
        raise RequestError(
            400, f"The multipart body could not be read ({exc.detail}); {HOW_TO_SEND['image']}."
        ) from None
    try:
        uploads = form.getlist("files")
        if not uploads:
            raise RequestError(400, f"The request holds no files; {HOW_TO_SEND['image']}.")
        blobs = []
        for index, upload in enumerate(uploads):
            if isinstance(upload, str):
                raise RequestError(
                    400, f"files[{index}] is a text field, not a file; {HOW_TO_SEND['image']}."
                )
            blobs.append((f"files[{index}] {upload.filename!r}", await upload.read()))
    finally:
        await form.close()
    predictor = state.predictor
    loop = asyncio.get_running_loop()
    decoded = await asyncio.gather(*(
        loop.run_in_executor(state.decode_pool, functools.partial(
            decode_image, data, predictor.image_size, predictor.resize_policy,
            max_pixels=limits.max_pixels, name=name,
        ))
        for name, data in blobs
    ), return_exceptions=True)
    for result in decoded:
        if isinstance(result, BaseException):
            raise result
    return decoded


async def predict(request: Request):
    """Classifies images (multipart field `files`) or texts (JSON `{"texts": [...]}`)."""
    state = _state(request)
    predictor = state.predictor
    kind = _content_kind(request, predictor.task)
    body = await _read_body(request, state.limits.max_upload_bytes)
    if kind == "image":
        items = await _read_images(request, body, state)
    else:  # off the event loop too: a large body takes a while to parse
        items = await asyncio.get_running_loop().run_in_executor(
            state.decode_pool, _parse_texts, body, state.limits
        )
    try:
        probabilities = await state.batcher.submit(items)
    except Exception as exc:  # noqa: BLE001 - a failed batch must not take the server down
        logger.exception("predict failed on a batch")
        return JSONResponse(
            {"error": f"The model failed on this request's batch ({type(exc).__name__}: {exc}). "
                      "The server is still up; try again, and report it if it happens again."},
            status_code=500,
        )
    names = predictor.class_names
    results = []
    for row in np.asarray(probabilities, dtype=np.float64):
        best = int(row.argmax())
        results.append({
            "label": names[best],
            "score": float(row[best]),
            "scores": {name: float(p) for name, p in zip(names, row)},
        })
    return JSONResponse(results)


async def health(request: Request):
    """`{"status": "ok"}` with the model's task and runtime and the batching counts."""
    state = _state(request)
    return {
        "status": "ok",
        "task": state.predictor.task,
        "runtime": state.predictor.runtime,
        "uptime_s": round(time.monotonic() - state.started, 3),
        "batching": state.batcher.stats(),
    }


async def metadata(request: Request):
    """The model's facts (task, classes, backbone or encoder, the run's metrics) and the
    server's settings and limits."""
    state = _state(request)
    facts = jsonable_encoder(state.predictor.metadata())
    facts["serving"] = {
        "max_batch": state.batcher.max_batch,
        "max_wait_ms": state.batcher.max_wait_ms,
        **asdict(state.limits),
    }
    return JSONResponse(facts)


async def card(request: Request):
    """The model card (markdown)."""
    text = _state(request).predictor.card or "# Model card\n\nThis model has no card.\n"
    return PlainTextResponse(text, media_type="text/markdown; charset=utf-8")


async def page(request: Request):
    """The web page: upload images or type texts, see the classes and the model card."""
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")


# -- the app ----------------------------------------------------------------------------------

_PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {
                "type": "object", "required": ["files"],
                "properties": {"files": {"type": "array",
                                         "items": {"type": "string", "format": "binary"}}},
            }},
            "application/json": {"schema": {
                "type": "object", "required": ["texts"],
                "properties": {"texts": {"type": "array", "items": {"type": "string"}}},
            }},
        },
    },
    "responses": {"200": {"description": "One result per input, in order", "content": {
        "application/json": {"example": [
            {"label": "cat", "score": 0.93, "scores": {"cat": 0.93, "dog": 0.07}}
        ]}}}},
}


async def _request_error(request: Request, exc: RequestError) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=exc.status)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code,
                        headers=getattr(exc, "headers", None))


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse({"error": f"The request is not valid: {exc.errors()}"}, status_code=422)


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    # Starlette logs the traceback after this answer; the server keeps serving.
    return JSONResponse(
        {"error": f"The server failed on this request ({type(exc).__name__}: {exc}). It is "
                  "still up; try again, and report it if it happens again."},
        status_code=500,
    )


def create_app(
    predictor,
    *,
    max_batch: int = MAX_BATCH,
    max_wait_ms: float = MAX_WAIT_MS,
    max_upload_bytes: int = Limits.max_upload_bytes,
    max_pixels: int = Limits.max_pixels,
    max_files: int = Limits.max_files,
    max_texts: int = Limits.max_texts,
    max_text_chars: int = Limits.max_text_chars,
    decode_threads: int | None = None,
) -> FastAPI:
    """A FastAPI app that serves `predictor`; see the module docstring for the endpoints.

    Args:
        predictor: a `transferkit.serving.predictors.Predictor` (`load_predictor(path)`).
        max_batch: the most inputs in one model call. Default `MAX_BATCH` (32).
        max_wait_ms: how long a batch waits for more requests, in ms. Default `MAX_WAIT_MS` (5).
        max_upload_bytes, max_pixels, max_files, max_texts, max_text_chars: what one request may
            hold; the defaults are those of `Limits`.
        decode_threads: threads that decode images. Defaults to the CPU count, at most 8.

    Returns:
        The app; run it with uvicorn (`serve` does).
    """
    limits = Limits(max_upload_bytes, max_pixels, max_files, max_texts, max_text_chars)
    if predictor.task not in HOW_TO_SEND:
        raise InputError(
            f"Cannot serve a model whose task is {predictor.task!r}; transferkit serves image "
            "and text classifiers (task 'image' or 'text')."
        )
    state = _Serving(
        predictor=predictor,
        batcher=DynamicBatcher(predictor, max_batch=max_batch, max_wait_ms=max_wait_ms),
        limits=limits,
        decode_pool=concurrent.futures.ThreadPoolExecutor(
            max_workers=decode_threads or min(8, os.cpu_count() or 1),
            thread_name_prefix="transferkit-decode",
        ),
        started=time.monotonic(),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        await state.batcher.aclose()
        state.decode_pool.shutdown(wait=False, cancel_futures=True)

    classes = ", ".join(predictor.class_names)
    app = FastAPI(
        title="transferkit model server",
        description=f"{'An' if predictor.task == 'image' else 'A'} {predictor.task} "
                    f"classifier ({classes}) trained with transferkit. "
                    f"POST /predict: {HOW_TO_SEND[predictor.task]}.",
        lifespan=lifespan,
    )
    app.state.serving = state
    app.add_api_route("/predict", predict, methods=["POST"], openapi_extra=_PREDICT_BODY)
    app.add_api_route("/health", health, methods=["GET"])
    app.add_api_route("/metadata", metadata, methods=["GET"])
    app.add_api_route("/card", card, methods=["GET"], response_class=PlainTextResponse)
    app.add_api_route("/", page, methods=["GET"], include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_exception_handler(RequestError, _request_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _internal_error)
    return app


# -- running it ------------------------------------------------------------------------------


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on `host:port` (0: a free port), or an InputError that says why
    not."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise InputError(f"`port` must be an int from 0 to 65535. Received: port={port!r}.")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise InputError(f"Cannot listen on `host` {host!r} ({exc}). Use an address of this "
                         "machine, such as 127.0.0.1 or 0.0.0.0.") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise InputError(
            f"Cannot listen on {host}:{port} ({exc.strerror or exc}). Choose another `port` "
            "(0 picks a free one) or stop the program that uses it."
        ) from None
    return sock


def serve(
    model,
    *,
    runtime: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_batch: int = MAX_BATCH,
    max_wait_ms: float = MAX_WAIT_MS,
    log_level: str = "warning",
    **limits,
) -> None:
    """Serves a model over HTTP until Ctrl+C (or SIGTERM); prints its URL once it listens.

    Args:
        model: a `.keras` file, a run folder, or a folder from `transferkit export`.
        runtime: `"auto"`, `"keras"` or `"onnx"` (see `load_predictor`). Default `None`:
            `"auto"`.
        host: the address to listen on. Defaults to 127.0.0.1 (this machine only).
        port: the TCP port; 0 picks a free one. Defaults to 8000.
        max_batch, max_wait_ms, **limits: as in `create_app`.
        log_level: uvicorn's log level. Defaults to "warning".

    Raises:
        InputError: the model cannot be loaded, or the port cannot be listened on.
    """
    uvicorn = require("uvicorn", "Serving models (`transferkit serve`)")
    from transferkit.serving.predictors import load_predictor

    DynamicBatcher.check(max_batch, max_wait_ms)  # bad settings fail before the model loads
    Limits(**{name: value for name, value in limits.items() if name in Limits.__dataclass_fields__})
    sock = _listen(host, port)  # a busy port too
    try:
        predictor = load_predictor(model, runtime)
        app = create_app(predictor, max_batch=max_batch, max_wait_ms=max_wait_ms, **limits)
        bound_port = sock.getsockname()[1]
        shown_host = f"[{host}]" if ":" in host else host
        url = f"http://{shown_host}:{bound_port}"
        print(
            f"Serving {model} ({predictor.task} classifier: {', '.join(predictor.class_names)}; "
            f"{predictor.runtime}) at {url}  (API: {url}/docs). Ctrl+C stops.",
            flush=True,
        )
        config = uvicorn.Config(app, host=host, port=bound_port, log_level=log_level)
        try:
            uvicorn.Server(config).run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn stops on Ctrl+C, then raises it again
            pass
    finally:
        sock.close()


@contextlib.contextmanager
def background_server(app, *, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0):
    """Runs `app` on uvicorn in a background thread for the block; yields its URL.

    For tests, notebooks and benchmarks: the server listens before the block starts, and is
    stopped (open requests finished) when it ends.

    Args:
        app: an ASGI app, such as `create_app(predictor)`.
        host: the address to listen on. Defaults to 127.0.0.1.
        port: the TCP port. Defaults to 0, a free one.
        timeout: seconds to wait for the server to start, and to stop. Defaults to 30.

    Example:
        with background_server(create_app(load_predictor("run"))) as url:
            requests.get(url + "/health")
    """
    uvicorn = require("uvicorn", "Serving models (`transferkit serve`)")
    sock = _listen(host, port)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="transferkit-server", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("The server did not start; see the log above.")
            time.sleep(0.01)
        shown_host = f"[{host}]" if ":" in host else host
        yield f"http://{shown_host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()
