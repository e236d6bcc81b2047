"""The HTTP server of `transferkit serve`: FastAPI, dynamic batching, and a web page.

`create_app(predictor)` returns a FastAPI app over any `Predictor` (Keras or ONNX Runtime):

* `POST /predict`: images as `multipart/form-data` files in the field `files` (repeatable), for
  image models; `application/json` `{"texts": [...]}` for text models. Answers
  `[{"label", "score", "scores": {class: probability}}]`, one per input, in request order.
* `POST /explain`: the same bodies; per input, what was explained and why: a heat map over the
  image (a PNG data URL) or each word's score (`transferkit.explain`). Keras models only.
* `GET /health`, `GET /metadata` (the model's facts and the server's limits), `GET /card` (the
  model card, markdown), `GET /` (the web page), and FastAPI's `/docs` and `/openapi.json`.

Every bad request is answered `{"error": "what was wrong and how to fix it"}` with a 4xx status,
and the server keeps serving; what a request may hold is checked before the model sees it
(`transferkit.serving.inputs`), and one request's input never fails another's
(`DynamicBatcher` isolates the item the model fails on). Requests whose `Host` is not one of the
server's names are refused (`transferkit.serving.hosts`: DNS rebinding). Uploads are decoded
exactly as training decodes files (`transferkit.data.images`), in a thread pool, never on the
event loop nor in the model's thread.

`serve(model)` loads a model and runs the app on uvicorn until Ctrl+C or SIGTERM; shutting down
runs what is queued at once and waits at most `SHUTDOWN_GRACE_S` for open requests.
"""

# ruff: noqa: E402 - FastAPI is an extra: `require` says how to install it before the imports.

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
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

from transferkit.serving.batching import DynamicBatcher, PredictError
from transferkit.serving.fair_pool import FairPool
from transferkit.serving.hosts import HostCheck, host_names
from transferkit.serving.inputs import (
    HOW_TO_SEND,
    Limits,
    RequestError,
    parse_texts,
    read_body,
    read_images,
)

__all__ = ["create_app", "serve", "background_server", "SHUTDOWN_GRACE_S"]

logger = logging.getLogger("transferkit.serving")

STATIC = Path(__file__).resolve().parent / "static"
SHUTDOWN_GRACE_S = 10  # the longest a shutdown waits for open requests (a model call is < 1 s)
DECODE_THREADS_RANGE = (1, 64)
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
# An absolute path in an exception's text: the server's files are nobody else's business.
_PATH = re.compile(r"""(?<![^\s'"(=])(?:[A-Za-z]:)?[\\/](?:[^\s'"():;,\\/]+[\\/])+""")


# -- the state of one app, and its endpoints -------------------------------------------------


@dataclass
class _Serving:
    predictor: object
    batcher: DynamicBatcher
    limits: Limits
    decode_pool: FairPool
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


async def _read_inputs(request: Request, state: _Serving) -> tuple[str, list]:
    """`(kind, items)` of a `/predict` or `/explain` body: decoded images (multipart field
    `files`) or texts (JSON `{"texts": [...]}`), checked against the limits."""
    predictor = state.predictor
    kind = _content_kind(request, predictor.task)
    body = await read_body(request, state.limits.max_upload_bytes)
    if kind == "image":
        return kind, await read_images(request, body, predictor=predictor, limits=state.limits,
                                       pool=state.decode_pool)
    # off the event loop too: a large body takes a while to parse
    return kind, await state.decode_pool.run(functools.partial(parse_texts, body, state.limits))


async def predict(request: Request):
    """Classifies images (multipart field `files`) or texts (JSON `{"texts": [...]}`)."""
    state = _state(request)
    predictor = state.predictor
    kind, items = await _read_inputs(request, state)
    try:
        probabilities = await state.batcher.submit(items)
    except PredictError as exc:  # the model failed on one of this request's items, run alone
        logger.error("predict failed on an item", exc_info=exc.error)
        noun = "files" if kind == "image" else "texts"
        return JSONResponse(
            {"error": f"The model failed on {noun}[{exc.index}] ({_shown(exc.error)}); the "
                      "other requests it was batched with were answered. Send the request "
                      "without it, and report it if it fails again."},
            status_code=500,
        )
    names = predictor.class_names
    results = []
    for row in np.asarray(probabilities, dtype=np.float64):
        target = getattr(predictor, "target", "single-label")  # any object that predicts
        if target != "single-label":  # a label set with scores, or a value
            from transferkit.tasks.targets import describe_row

            results.append(describe_row(target, names, row, predictor.thresholds))
            continue
        best = int(row.argmax())
        results.append({
            "label": names[best],
            "score": float(row[best]),
            "scores": {name: float(p) for name, p in zip(names, row)},
        })
    return JSONResponse(results)


async def explain(request: Request):
    """Why the model says what it says: `POST /explain` takes what `/predict` takes (and
    `?label=` to explain another class, `?method=` as `explain` takes it) and answers, per input,
    `prediction`, `explained`, `score`, `method` and, for an image, `overlay` (a PNG data URL:
    the heat map over the image as the model saw it), for a text, `words` (each with its
    score). Needs the Keras model (gradients): a server of an export folder alone answers 501."""
    state = _state(request)
    predictor = state.predictor
    _, items = await _read_inputs(request, state)
    label, method = request.query_params.get("label"), request.query_params.get("method")

    def explained():  # in the model's thread: it may load the Keras model first
        classifier = predictor.explainer() if hasattr(predictor, "explainer") else None
        if classifier is None:
            raise RequestError(
                501, "Explanations need the Keras model; this server runs an export folder on "
                "its own. Serve the run folder or its model.keras to explain predictions."
            )
        return classifier.explain(items, label=label, method=method)

    try:
        results = await state.batcher.run_alone(explained)
    except RequestError:
        raise
    except InputError as exc:  # an unknown label or method
        raise RequestError(400, str(exc)) from None
    return JSONResponse([_explained(result, item) for result, item in zip(results, items)])


def _explained(result: dict, item) -> dict:
    """One `/explain` answer: the result without arrays; an image's map as an overlay PNG."""
    answer = {key: result[key] for key in ("prediction", "explained", "score", "method", "words")
              if key in result}
    if "map" in result:
        import base64
        import io

        from PIL import Image

        from transferkit.explain.images import blend

        buffer = io.BytesIO()
        Image.fromarray(blend(np.asarray(item), result["map"], result["seen"])).save(buffer, "PNG")
        answer["overlay"] = "data:image/png;base64," + base64.b64encode(
            buffer.getvalue()).decode("ascii")
    return answer


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


def _shown(exc: BaseException) -> str:
    """`Type: message` of an exception, without the absolute paths it may hold."""
    return f"{type(exc).__name__}: {_PATH.sub('', str(exc))}"


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    # Starlette logs the traceback after this answer; the server keeps serving.
    return JSONResponse(
        {"error": f"The server failed on this request ({_shown(exc)}). It is still up; try "
                  "again, and report it if it happens again."},
        status_code=500,
    )


def create_app(
    predictor,
    *,
    max_batch: int = MAX_BATCH,
    max_wait_ms: float = MAX_WAIT_MS,
    max_upload_bytes: int = Limits.max_upload_bytes,
    max_pixels: int = Limits.max_pixels,
    max_request_pixels: int = Limits.max_request_pixels,
    max_files: int = Limits.max_files,
    max_texts: int = Limits.max_texts,
    max_text_chars: int = Limits.max_text_chars,
    decode_threads: int | None = None,
    allowed_hosts: list[str] | str | None = None,
) -> FastAPI:
    """A FastAPI app that serves `predictor`; see the module docstring for the endpoints.

    Args:
        predictor: a `transferkit.serving.predictors.Predictor` (`load_predictor(path)`).
        max_batch: the most inputs in one model call, 1 to 1024. Default `MAX_BATCH` (32).
        max_wait_ms: how long a batch waits for more requests, 0 to 1000 ms. Default
            `MAX_WAIT_MS` (5).
        max_upload_bytes, max_pixels, max_request_pixels, max_files, max_texts, max_text_chars:
            what one request may hold; the defaults and ranges are those of `Limits`.
        decode_threads: threads that decode images, 1 to 64. Defaults to the CPU count, at
            most 8. Concurrent requests take turns on them (`FairPool`).
        allowed_hosts: `Host` names the app answers besides localhost, 127.0.0.1 and ::1 (a
            list or a comma-separated string; `*.example.org` a domain, `*` any). Default none.
            Use `TestClient(app, base_url="http://localhost")`: its default name is refused.

    Returns:
        The app; run it with uvicorn (`serve` does).

    Raises:
        InputError: a setting outside its range, or a task the server does not serve.
    """
    limits = Limits(max_upload_bytes, max_pixels, max_request_pixels, max_files, max_texts,
                    max_text_chars)
    hosts = host_names(None, allowed_hosts or ())
    if predictor.task not in HOW_TO_SEND:
        raise InputError(
            f"Cannot serve a model whose task is {predictor.task!r}; transferkit serves image "
            "and text classifiers (task 'image' or 'text')."
        )
    state = _Serving(
        predictor=predictor,
        batcher=DynamicBatcher(predictor, max_batch=max_batch, max_wait_ms=max_wait_ms),
        limits=limits,
        decode_pool=FairPool(_decode_threads(decode_threads)),
        started=time.monotonic(),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        await state.batcher.aclose()
        state.decode_pool.shutdown()

    classes = ", ".join(predictor.class_names)
    app = FastAPI(
        title="transferkit model server",
        description=f"{'An' if predictor.task == 'image' else 'A'} {predictor.task} "
                    f"classifier ({classes}) trained with transferkit. "
                    f"POST /predict: {HOW_TO_SEND[predictor.task]}.",
        lifespan=lifespan,
    )
    app.state.serving = state
    _add_routes(app)
    app.add_middleware(HostCheck, allowed=hosts)
    return app


def _add_routes(app: FastAPI) -> None:
    app.add_api_route("/predict", predict, methods=["POST"], openapi_extra=_PREDICT_BODY)
    app.add_api_route("/explain", explain, methods=["POST"], openapi_extra=_PREDICT_BODY)
    app.add_api_route("/health", health, methods=["GET"])
    app.add_api_route("/metadata", metadata, methods=["GET"])
    app.add_api_route("/card", card, methods=["GET"], response_class=PlainTextResponse)
    app.add_api_route("/", page, methods=["GET"], include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_exception_handler(RequestError, _request_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _internal_error)


def _decode_threads(value) -> int:
    """`decode_threads`, checked; `None`: the CPU count, at most 8."""
    if value is None:
        return min(8, os.cpu_count() or 1)
    low, high = DECODE_THREADS_RANGE
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InputError(f"`decode_threads` must be an int from {low} to {high}. Received: "
                         f"decode_threads={value!r}.")
    return value


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


def _uvicorn_server(app, host: str, port: int, log_level: str = "warning"):
    """A `uvicorn.Server` for `app` that, as it begins to shut down, tells the app's batcher to
    stop waiting for company, and waits for open requests at most `SHUTDOWN_GRACE_S`."""
    uvicorn = require("uvicorn", "Serving models (`transferkit serve`)")

    class Server(uvicorn.Server):
        async def shutdown(self, sockets=None):
            serving = getattr(getattr(app, "state", None), "serving", None)
            if serving is not None:
                serving.batcher.drain()
            await super().shutdown(sockets)

    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on",
                            timeout_graceful_shutdown=SHUTDOWN_GRACE_S)
    return Server(config)


def serve(
    model,
    *,
    runtime: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_batch: int = MAX_BATCH,
    max_wait_ms: float = MAX_WAIT_MS,
    allowed_hosts: list[str] | str | None = None,
    log_level: str = "warning",
    **limits,
) -> None:
    """Serves a model over HTTP until Ctrl+C (or SIGTERM); prints its URL once it listens.

    Args:
        model: a `.keras` file, a run folder, or a folder from `transferkit export`.
        runtime: `"auto"`, `"keras"` or `"onnx"` (see `load_predictor`). Default `None`:
            `"auto"`.
        host: the address to listen on. Defaults to 127.0.0.1 (this machine only).
        port: the TCP port, 0 to 65535; 0 picks a free one. Defaults to 8000.
        max_batch, max_wait_ms, **limits: as in `create_app`.
        allowed_hosts: `Host` names to answer besides localhost, 127.0.0.1, ::1 and `host` (for
            0.0.0.0, this machine's name); as in `create_app`. Default none.
        log_level: uvicorn's log level, one of `LOG_LEVELS`. Defaults to "warning".

    Raises:
        InputError: a setting outside its range, the model cannot be loaded, or the port cannot
            be listened on.
    """
    from transferkit.serving.predictors import load_predictor

    # Bad settings fail before the model loads.
    DynamicBatcher.check(max_batch, max_wait_ms)
    Limits(**{name: value for name, value in limits.items() if name in Limits.__dataclass_fields__})
    _decode_threads(limits.get("decode_threads"))
    hosts = host_names(host, allowed_hosts or ())
    if log_level not in LOG_LEVELS:
        raise InputError(f"`log_level` must be one of {', '.join(LOG_LEVELS)}. Received: "
                         f"log_level={log_level!r}.")
    sock = _listen(host, port)  # a busy port too
    try:
        predictor = load_predictor(model, runtime)
        app = create_app(predictor, max_batch=max_batch, max_wait_ms=max_wait_ms,
                         allowed_hosts=hosts, **limits)
        bound_port = sock.getsockname()[1]
        shown_host = f"[{host}]" if ":" in host else host
        url = f"http://{shown_host}:{bound_port}"
        print(
            f"Serving {model} ({predictor.task} classifier: {', '.join(predictor.class_names)}; "
            f"{predictor.runtime}) at {url}  (API: {url}/docs). Ctrl+C stops.",
            flush=True,
        )
        try:
            _uvicorn_server(app, host, bound_port, log_level).run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn stops on Ctrl+C, then raises it again
            pass
    finally:
        sock.close()


@contextlib.contextmanager
def background_server(app, *, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0):
    """Runs `app` on uvicorn in a background thread for the block; yields its URL.

    For tests, notebooks and benchmarks: the server listens before the block starts, and is
    stopped (open requests finished, queued ones run at once) when it ends.

    Args:
        app: an ASGI app, such as `create_app(predictor)`.
        host: the address to listen on. Defaults to 127.0.0.1.
        port: the TCP port. Defaults to 0, a free one.
        timeout: seconds to wait for the server to start, and to stop. Defaults to 30.

    Example:
        with background_server(create_app(load_predictor("run"))) as url:
            requests.get(url + "/health")
    """
    sock = _listen(host, port)
    server = _uvicorn_server(app, host, sock.getsockname()[1])
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
