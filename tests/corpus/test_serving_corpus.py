"""Hostile requests to `transferkit serve` (issue 27, "Nothing lost, nothing stale"): each is
refused with a 4xx JSON error that names what was wrong and how to fix it, or answered; none
fails, delays or loses another client's request, and none is answered from a name the server
does not go by (DNS rebinding).

Most servers here serve a tiny stand-in model (`Constant`): what is under test is the server,
and the stand-in keeps each test well under a second. The lone-surrogate test serves the real
text run, whose TensorFlow string conversion is what failed whole batches."""

from __future__ import annotations

import concurrent.futures
import io
import json
import math
import socket
import threading
import time

import numpy as np
import pytest
import requests
from PIL import Image

from transferkit.cli import main
from transferkit.errors import InputError
from transferkit.serving.app import background_server, create_app

TIMEOUT = 30  # seconds for one HTTP call


class Constant:
    """A stand-in model: the same probabilities for every item, except that an item equal to
    `fail_on` makes the whole `predict` call raise `error` (as TensorFlow raised for a lone
    surrogate). Counts its calls."""

    runtime = "stand-in"
    card = "# Model card\n\nA stand-in.\n"
    image_size = (32, 32)
    resize_policy = "center_crop"

    def __init__(self, task="image", fail_on=None, error=None):
        self.task = task
        self.class_names = ["cat", "dog"]
        self.facts = {"task": task, "classes": self.class_names}
        self.fail_on = fail_on
        self.error = error or ValueError("Unable to convert element to UTF-8")
        self.calls = 0

    def metadata(self):
        return {**self.facts, "runtime": self.runtime}

    def predict(self, items):
        self.calls += 1
        if self.fail_on is not None and any(isinstance(i, str) and i == self.fail_on
                                            for i in items):
            raise self.error
        return np.tile(np.asarray([[0.25, 0.75]], dtype=np.float32), (len(items), 1))


def _png(width: int, height: int) -> bytes:
    """A one-bit PNG: a few KB that decode to `width x height` pixels."""
    buffer = io.BytesIO()
    Image.new("1", (width, height)).save(buffer, "PNG")
    return buffer.getvalue()


SMALL_PNG = _png(40, 30)


def _post_images(url, blobs, **kwargs):
    files = [("files", (f"{i}.png", blob, "image/png")) for i, blob in enumerate(blobs)]
    return requests.post(url + "/predict", files=files, timeout=TIMEOUT, **kwargs)


def _post_json(url, body: str, **kwargs):
    return requests.post(url + "/predict", data=body.encode("ascii"), timeout=TIMEOUT,
                         headers={"Content-Type": "application/json"}, **kwargs)


def _still_serves_images(url):
    response = _post_images(url, [SMALL_PNG])
    assert response.status_code == 200, response.text
    assert response.json()[0]["label"] == "dog"


@pytest.fixture(scope="module")
def image_server():
    """A stand-in image model on two decoding threads, every request run at once."""
    with background_server(create_app(Constant(), max_wait_ms=0, decode_threads=2)) as url:
        yield url


@pytest.fixture(scope="module")
def text_server():
    with background_server(create_app(Constant("text"), max_wait_ms=0)) as url:
        yield url


# -- 1. one client's input never fails another's ---------------------------------------------


@pytest.fixture(scope="module")
def real_text_server(text_run):
    """The text run's model (Keras), with batches that wait 50 ms so that concurrent requests
    share them."""
    from transferkit.serving.predictors import load_predictor

    with background_server(create_app(load_predictor(text_run[3]), max_wait_ms=50)) as url:
        yield url


def test_a_lone_surrogate_is_refused_by_name_and_fails_no_other_request(real_text_server):
    """Before: a text holding "\\ud800" (valid JSON) failed TensorFlow's string conversion for
    its whole batch: the good requests batched with it were answered 500."""
    url = real_text_server
    good = [f"a {word} film" for word in ("great", "dull", "lovely", "boring", "fun", "awful")]
    bad = ["\ud800", "fine \udc00 text", "\ude00\ud83d reversed pair"]
    bodies = [json.dumps({"texts": [text]}) for text in good]
    bodies += [json.dumps({"texts": ["a fine film", text]}) for text in bad]
    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        responses = list(pool.map(lambda body: _post_json(url, body), bodies))
    answers = responses[:len(good)]
    assert [r.status_code for r in answers] == [200] * len(good), [r.text for r in answers]
    together = _post_json(url, json.dumps({"texts": good}))  # each got its own answer
    assert together.status_code == 200, together.text
    for response, expected in zip(answers, together.json()):
        (answer,) = response.json()
        np.testing.assert_allclose(list(answer["scores"].values()),
                                   list(expected["scores"].values()), atol=1e-5)
    for response in responses[len(good):]:
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error.startswith("texts[1] is not valid Unicode: character ")
        assert "lone surrogate" in error and "Send the text as UTF-8" in error


def test_an_item_the_model_fails_on_fails_only_its_own_request():
    """Whatever input gets past the checks and still breaks the model, the requests batched
    with it get their own answers: the batch is run again without it."""
    predictor = Constant("text", fail_on="explode", error=RuntimeError("the model broke"))
    with background_server(create_app(predictor, max_wait_ms=300)) as url:
        bodies = [json.dumps({"texts": [f"text {i}"]}) for i in range(6)]
        bodies.insert(3, json.dumps({"texts": ["fine", "explode", "fine too"]}))
        with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
            responses = list(pool.map(lambda body: _post_json(url, body), bodies))
        failed = responses.pop(3)
        assert [r.status_code for r in responses] == [200] * 6, [r.text for r in responses]
        assert failed.status_code == 500
        error = failed.json()["error"]
        assert error.startswith("The model failed on texts[1] (RuntimeError: the model broke)")
        assert "Send the request without it" in error
        health = requests.get(url + "/health", timeout=TIMEOUT).json()["batching"]
        assert health["items"] == 8  # the six good requests and the two good texts beside it


def test_a_failing_item_of_a_request_larger_than_a_batch_is_named_by_its_place():
    import asyncio

    from transferkit.serving.batching import DynamicBatcher

    predictor = Constant("text", fail_on="explode")

    async def scenario():
        batcher = DynamicBatcher(predictor, max_batch=4, max_wait_ms=20)
        try:
            items = [f"t{i}" for i in range(10)]
            items[6] = "explode"  # in the second chunk of four
            return await asyncio.gather(batcher.submit(items), batcher.submit(["alone"]),
                                        return_exceptions=True)
        finally:
            await batcher.aclose()

    large, alone = asyncio.run(scenario())
    assert getattr(large, "index", None) == 6, repr(large)
    assert "item 6: ValueError: Unable to convert element to UTF-8" in str(large)
    assert alone.shape == (1, 2)


# -- 2. every setting bounded; shutdown never waits on the batcher ---------------------------


def _error_line(argv, capsys) -> str:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit:  # argparse refused the flag
        code = exit.code
    out, err = capsys.readouterr()
    assert code == 1 and out == "", err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("flags, message", [
    (["--max-wait-ms", "inf"], "--max-wait-ms must be a number of milliseconds from 0 to 1000. "
                               "Received: max_wait_ms=inf."),
    (["--max-wait-ms", "1e9"], "--max-wait-ms must be a number of milliseconds from 0 to 1000. "
                               "Received: max_wait_ms=1000000000.0."),
    (["--max-batch", "100000000"], "--max-batch must be an int from 1 to 1024. Received: "
                                   "max_batch=100000000."),
    (["--allowed-hosts", "http://models.example.org"],
     "--allowed-hosts holds 'http://models.example.org', which is not a host name."),
    (["--allowed-hosts", "models.example.org:8000"],
     "--allowed-hosts holds 'models.example.org:8000', which is not a host name."),
])
def test_an_unbounded_serve_setting_is_one_line_naming_the_range(tmp_path, capsys, flags,
                                                                 message):
    """Before: `serve --max-wait-ms inf` served, never answered a lone request, and ignored
    Ctrl+C while it waited. The settings are checked before the port or the model."""
    with socket.socket() as taken:  # so that a server that accepted the setting stops at once
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        line = _error_line(["serve", tmp_path / "no_model", "--port", taken.getsockname()[1],
                            *flags], capsys)
    assert line.startswith(f"transferkit: error: {message}")


@pytest.mark.parametrize("setting, message", [
    ({"max_wait_ms": math.inf}, r"`max_wait_ms` must be a number of milliseconds from 0 to 1000"),
    ({"max_wait_ms": math.nan}, r"`max_wait_ms` must be .* Received: max_wait_ms=nan"),
    ({"max_batch": 10**9}, r"`max_batch` must be an int from 1 to 1024"),
    ({"max_upload_bytes": 2**40}, r"`max_upload_bytes` must be an int from 1 to 1,073,741,824"),
    ({"max_texts": 10**8}, r"`max_texts` must be an int from 1 to 10,000"),
    ({"decode_threads": -1}, r"`decode_threads` must be an int from 1 to 64"),
    ({"decode_threads": 10**6}, r"`decode_threads` must be an int from 1 to 64"),
])
def test_an_unbounded_app_setting_names_its_range(setting, message):
    with pytest.raises(InputError, match=message):
        create_app(Constant(), **setting)


def test_shutting_down_answers_a_waiting_request_at_once():
    """Before: shutdown waited for the open request, which waited `max_wait_ms` for company."""
    answer = {}

    def post(url):
        answer["response"] = _post_images(url, [SMALL_PNG])
        answer["at"] = time.monotonic()

    with background_server(create_app(Constant(), max_wait_ms=1000)) as url:
        client = threading.Thread(target=post, args=(url,))
        client.start()
        time.sleep(0.3)  # the request waits in the batcher
        stopping = time.monotonic()
    client.join(TIMEOUT)
    assert answer["response"].status_code == 200, answer["response"].text
    assert answer["at"] - stopping < 0.5  # not the 0.7 s left of the batch's wait


# -- 3. pixels are budgeted per request, and requests take turns decoding ---------------------


def test_a_request_over_the_pixel_budget_is_refused_from_its_headers(image_server):
    """Before: 64 one-bit 6300x6300 PNGs (314 KB) took 28.8 s to decode, each one within the
    per-image limit. Three of them already hold more than a request may."""
    big = _png(6300, 6300)  # 39.7 million pixels: under the 40 million of one image
    started = time.monotonic()
    response = _post_images(image_server, [big] * 3)
    assert response.status_code == 413, response.text[:300]
    assert time.monotonic() - started < 2.0  # the headers only (decoding them takes ~4 s)
    error = response.json()["error"]
    assert "The request's 3 images hold 119,070,000 pixels to decode" in error
    assert "at most 100,000,000 per request. Send fewer images per request" in error
    _still_serves_images(image_server)


def test_a_jpeg_counts_at_the_scale_it_is_decoded_at():
    """The budget counts what decoding costs: a 12-megapixel photo decoded for a small model
    is read at 1/8 scale, so 64 of them are not refused."""
    from transferkit.serving.inputs import Limits, pixels_to_decode

    buffer = io.BytesIO()
    Image.new("RGB", (4000, 3000), (200, 120, 40)).save(buffer, "JPEG", quality=70)
    blobs = [(f"files[{i}]", buffer.getvalue()) for i in range(64)]
    assert pixels_to_decode(blobs, (224, 224), Limits()) == 64 * 500 * 375


def test_a_large_request_does_not_make_a_small_one_wait_for_all_its_images(image_server):
    """Before: a request's images queued first come, first served, so a one-image request sent
    a moment after a large one waited for every image of it."""
    large = [_png(2000, 2000)] * 12  # ~0.07 s each to decode on one core
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        started = time.monotonic()
        first = pool.submit(lambda: (_post_images(image_server, large), time.monotonic()))
        time.sleep(0.05)
        small_sent = time.monotonic()
        small, small_done = _post_images(image_server, [SMALL_PNG]), time.monotonic()
        large_response, large_done = first.result()
    assert large_response.status_code == 200 and len(large_response.json()) == 12
    assert small.status_code == 200
    # Taking turns, the small request waits for about one large image; in a queue, for all.
    assert small_done - small_sent < 0.6 * (large_done - started), (
        small_done - small_sent, large_done - started)


# -- 4. DNS rebinding: only the server's own names are answered -----------------------------


@pytest.mark.parametrize("host", [
    "evil.example", "evil.example:8000", "127.0.0.1.nip.io", "localhost.evil.example",
    "LOCALHOST.evil.example",
])
@pytest.mark.parametrize("method, path", [("GET", "/metadata"), ("GET", "/card"),
                                          ("POST", "/predict")])
def test_an_unknown_host_name_is_refused(image_server, host, method, path):
    """Before: any Host was answered, so a page that rebinds its own name to 127.0.0.1 could
    read the model's facts and use it."""
    files = [("files", ("a.png", SMALL_PNG, "image/png"))] if method == "POST" else None
    response = requests.request(method, image_server + path, headers={"Host": host},
                                files=files, timeout=TIMEOUT)
    assert response.status_code == 400, response.text[:200]
    error = response.json()["error"]
    assert error.startswith(f"This server does not answer the Host {host!r}")
    assert "DNS rebinding" in error and "--allowed-hosts" in error


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]"])
def test_the_local_names_are_answered(image_server, host):
    port = image_server.rsplit(":", 1)[1]
    response = requests.get(image_server + "/health", headers={"Host": f"{host}:{port}"},
                            timeout=TIMEOUT)
    assert response.status_code == 200 and response.json()["status"] == "ok"


def test_a_request_without_a_host_header_is_refused(image_server):
    port = int(image_server.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as connection:
        connection.sendall(b"GET /metadata HTTP/1.0\r\n\r\n")
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), answer[:200]
    assert json.loads(body)["error"].startswith("The request has no Host header")


def test_allowed_hosts_adds_names_and_domains():
    app = create_app(Constant(), allowed_hosts="models.example.org,*.lan")
    with background_server(app) as url:
        for host, status in [("models.example.org", 200), ("gpu.lan", 200),
                             ("evil.example", 400), ("lan.evil.example", 400)]:
            response = requests.get(url + "/health", headers={"Host": host}, timeout=TIMEOUT)
            assert response.status_code == status, (host, response.text)


# -- 5. truncated and malformed bodies say so ----------------------------------------------


def _multipart(*parts: bytes, close=True) -> bytes:
    body = b"".join(
        b"--xyz\r\nContent-Disposition: form-data; name=\"files\"; filename=\"" + name
        + b"\"\r\nContent-Type: image/png\r\n\r\n" + SMALL_PNG + b"\r\n"
        for name in parts
    )
    return body + (b"--xyz--\r\n" if close else b"")


WHOLE = _multipart(b"a.png", b"b.png")
FIRST_PART = len(_multipart(b"a.png", close=False))


@pytest.mark.parametrize("cut", [
    pytest.param(FIRST_PART + 40, id="after_the_first_file"),  # before: one answer of two
    pytest.param(len(WHOLE) - len(b"--xyz--\r\n"), id="before_the_closing_boundary"),
    pytest.param(FIRST_PART // 2, id="inside_the_first_file"),  # before: "holds no files"
    pytest.param(30, id="inside_the_first_headers"),
])
def test_a_truncated_multipart_body_is_called_truncated(image_server, cut):
    response = requests.post(image_server + "/predict", data=WHOLE[:cut], timeout=TIMEOUT,
                             headers={"Content-Type": "multipart/form-data; boundary=xyz"})
    assert response.status_code == 400, response.text
    assert response.json()["error"] == (
        "The multipart body is truncated or malformed: it does not end with its closing boundary "
        "('--xyz--'), so files may be missing. Send the whole request again."
    )
    whole = requests.post(image_server + "/predict", data=WHOLE, timeout=TIMEOUT,
                          headers={"Content-Type": "multipart/form-data; boundary=xyz"})
    assert whole.status_code == 200 and len(whole.json()) == 2


def test_a_file_in_another_field_is_refused_not_dropped(image_server):
    files = [("files", ("a.png", SMALL_PNG, "image/png")), ("file", ("b.png", SMALL_PNG,
                                                                     "image/png"))]
    response = requests.post(image_server + "/predict", files=files, timeout=TIMEOUT)
    assert response.status_code == 400, response.text  # before: one answer for two images
    assert response.json()["error"].startswith(
        "The request holds parts named 'file' beside `files`; this server reads only `files`")


@pytest.mark.parametrize("body, message", [
    pytest.param('{"texts": ' + "[" * 100_000 + "]" * 100_000 + "}",
                 "The JSON is nested too deeply to read; send JSON {\"texts\": ", id="deep"),
    pytest.param('{"texts": ["lost"], "texts": ["kept"]}',
                 "The JSON repeats the key 'texts'; a parser keeps only one of them.",
                 id="repeated_key"),
    pytest.param('{"texts": ["read"], "text": ["not read"]}',
                 "The JSON holds 'text' beside \"texts\"; this server reads only \"texts\"",
                 id="another_key"),
])
def test_a_json_body_that_would_be_misread_is_a_400(text_server, body, message):
    """Before: 100,000-deep JSON was answered 500 "report it"; a repeated or misspelt key was
    answered for the texts it kept, silently."""
    response = _post_json(text_server, body)
    assert response.status_code == 400, response.text[:300]
    assert response.json()["error"].startswith(message)
    good = _post_json(text_server, '{"texts": ["fine"]}')
    assert good.status_code == 200 and len(good.json()) == 1


# -- the server adds no paths of its own ----------------------------------------------------


def test_the_server_adds_no_path_of_its_own(tmp_path):
    """The model's facts are the card module's business; the server adds none of its files to
    /metadata, /card or /health, nor to the errors it writes around an exception's text."""
    secret = tmp_path / "home" / "models" / "model.onnx"
    predictor = Constant("text", fail_on="x", error=FileNotFoundError(f"No such file: {secret}"))
    predictor.path = secret.parent
    with background_server(create_app(predictor, max_wait_ms=0)) as url:
        answers = [requests.get(url + path, timeout=TIMEOUT) for path in
                   ("/metadata", "/card", "/health")]
        failed = _post_json(url, '{"texts": ["x"]}')
        predictor.metadata = lambda: (_ for _ in ()).throw(OSError(f"cannot read '{secret}'"))
        broken = requests.get(url + "/metadata", timeout=TIMEOUT)
    assert [r.status_code for r in answers] == [200] * 3
    assert not any(str(tmp_path) in r.text for r in answers)
    assert failed.status_code == 500 and broken.status_code == 500
    for response in (failed, broken):
        error = response.json()["error"]
        assert str(tmp_path) not in error and "model.onnx" in error, error
