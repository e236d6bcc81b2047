"""The HTTP server over real sockets: a uvicorn server per module on a free port of 127.0.0.1,
driven with `requests`; answers are checked against `load_predictor(...).predict`."""

from __future__ import annotations

import concurrent.futures
import io
from types import SimpleNamespace

import numpy as np
import pytest
import requests
from PIL import Image

from transferkit.data.images import load_resized
from transferkit.errors import InputError
from transferkit.serving.app import background_server, create_app
from transferkit.serving.inputs import Limits
from transferkit.serving.predictors import load_predictor

TIMEOUT = 60  # seconds for one HTTP call
UPLOAD_LIMIT = 2 * 2**20  # small, so that going over it is cheap
MAX_FILES = 4


def _jpeg(path, *, orientation=None, size=(120, 90)) -> bytes:
    """A face from the fixture data as a larger RGB JPEG, optionally with an EXIF rotation."""
    with Image.open(path) as image:
        image = image.convert("RGB").resize(size, Image.BICUBIC)
    buffer = io.BytesIO()
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    image.save(buffer, "JPEG", quality=90, exif=exif.tobytes())
    return buffer.getvalue()


@pytest.fixture(scope="module")
def image_server(image_run):
    """`(url, reference predictor)`: the image run's model served with a 2 MiB upload limit and
    at most 4 files per request; the reference is a second, independent `load_predictor` of the
    same model."""
    run = image_run[3]
    app = create_app(load_predictor(run), max_batch=8, max_wait_ms=10,
                     max_upload_bytes=UPLOAD_LIMIT, max_files=MAX_FILES)
    with background_server(app) as url:
        yield url, load_predictor(run)


@pytest.fixture(scope="module")
def text_server(text_run):
    run = text_run[3]
    with background_server(create_app(load_predictor(run), max_wait_ms=10)) as url:
        yield url, load_predictor(run)


def _check_results(results, expected, class_names, atol=1e-5):
    assert len(results) == len(expected)
    for result, row in zip(results, expected):
        assert list(result["scores"]) == class_names
        np.testing.assert_allclose(list(result["scores"].values()), row, atol=atol)
        assert result["label"] == class_names[int(np.argmax(row))]
        assert result["score"] == max(result["scores"].values())


def _images_ok(url, path):
    """A good request, to show the server still serves."""
    with open(path, "rb") as file:
        response = requests.post(url + "/predict", files=[("files", file)], timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    assert len(response.json()) == 1


# -- images ------------------------------------------------------------------------------------


def test_predict_images_as_the_predictor_does(image_server, image_run, tmp_path):
    url, reference = image_server
    data = image_run[4]
    paths = [data / "not_face" / "not_face_003.png", data / "face" / "face_001.png",
             data / "face" / "face_002.png"]
    rotated = tmp_path / "rotated.jpg"  # EXIF orientation 6: shown turned by 90 degrees
    rotated.write_bytes(_jpeg(data / "face" / "face_004.png", orientation=6))
    paths.append(rotated)
    files = [("files", (p.name, p.read_bytes(), "application/octet-stream")) for p in paths]
    response = requests.post(url + "/predict", files=files, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    decoded = [load_resized(p, reference.image_size, reference.resize_policy) for p in paths]
    _check_results(response.json(), reference.predict(decoded), reference.class_names)


def test_concurrent_image_requests_each_get_their_own_answer(image_server, image_run):
    url, reference = image_server
    data = image_run[4]
    paths = [data / kind / f"{kind}_{i:03d}.png" for kind in ("face", "not_face") for i in range(6)]
    before = requests.get(url + "/health", timeout=TIMEOUT).json()["batching"]

    def post(path):
        files = [("files", (path.name, path.read_bytes(), "image/png"))]
        return requests.post(url + "/predict", files=files, timeout=TIMEOUT)

    with concurrent.futures.ThreadPoolExecutor(len(paths)) as pool:
        responses = list(pool.map(post, paths))
    assert [r.status_code for r in responses] == [200] * len(paths)
    decoded = [load_resized(p, reference.image_size, reference.resize_policy) for p in paths]
    _check_results([r.json()[0] for r in responses], reference.predict(decoded),
                   reference.class_names)
    after = requests.get(url + "/health", timeout=TIMEOUT).json()["batching"]
    assert after["items"] - before["items"] == len(paths)
    assert after["requests"] - before["requests"] == len(paths)
    assert 1 <= after["batches"] - before["batches"] <= len(paths)
    assert after["largest_batch"] <= 8


def test_health_metadata_card_docs_and_page(image_server):
    url, reference = image_server
    health = requests.get(url + "/health", timeout=TIMEOUT).json()
    assert health["status"] == "ok" and health["task"] == "image"
    # "auto" serves an image model on ONNX Runtime (an export made once into the cache).
    assert health["runtime"] == reference.runtime == "onnx"
    assert health["batching"]["max_batch"] == 8
    metadata = requests.get(url + "/metadata", timeout=TIMEOUT).json()
    assert metadata["task"] == "image" and metadata["classes"] == reference.class_names
    assert metadata["backbone"] == reference.facts["backbone"]
    assert metadata["image_size"] == list(reference.image_size)
    assert metadata["metrics"]["accuracy"] == reference.facts["metrics"]["accuracy"]
    assert metadata["serving"]["max_upload_bytes"] == UPLOAD_LIMIT
    card = requests.get(url + "/card", timeout=TIMEOUT)
    assert card.status_code == 200 and card.headers["content-type"].startswith("text/markdown")
    assert card.text == reference.card and card.text.startswith("# Model card")
    schema = requests.get(url + "/openapi.json", timeout=TIMEOUT).json()
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert set(body) == {"multipart/form-data", "application/json"}
    assert {"/health", "/metadata", "/card"} <= set(schema["paths"])
    assert requests.get(url + "/docs", timeout=TIMEOUT).status_code == 200
    page = requests.get(url + "/", timeout=TIMEOUT)
    assert page.status_code == 200 and 'id="files"' in page.text and "/static/app.js" in page.text
    script = requests.get(url + "/static/app.js", timeout=TIMEOUT)
    assert script.status_code == 200 and "renderMarkdown" in script.text
    missing = requests.get(url + "/nothing", timeout=TIMEOUT)
    assert missing.status_code == 404 and missing.json() == {"error": "Not Found"}


def _fifty_megapixels() -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (8000, 6250)).save(buffer, "PNG")  # 1 bit per pixel: a small file
    return buffer.getvalue()


def _truncated_jpeg(data) -> bytes:
    whole = _jpeg(data / "face" / "face_005.png", size=(256, 256))
    return whole[: len(whole) // 2]


def _chunks(total):
    """A body without Content-Length (chunked): the server must stop reading it on its own."""
    sent = 0
    while sent < total:
        yield b"\0" * 65536
        sent += 65536


def _bad_image_request(name, data):
    """`(requests.post keyword arguments, accepted statuses, words of the error)`."""
    image = (data / "face" / "face_000.png").read_bytes()
    multipart = {"Content-Type": "multipart/form-data; boundary=xyz"}
    cases = {
        "not_an_image": ({"files": [("files", ("notes.txt", b"not an image", "text/plain"))]},
                         {400, 415}, "not an image"),
        "truncated_jpeg": ({"files": [("files", ("cut.jpg", _truncated_jpeg(data), "image/jpeg"))]},
                           {400}, "truncated"),
        "fifty_megapixels": ({"files": [("files", ("huge.png", _fifty_megapixels(), "image/png"))]},
                             {400, 413}, "8000x6250"),
        "over_the_upload_limit": (
            {"files": [("files", ("big.png", image + b"\0" * UPLOAD_LIMIT, "image/png"))]},
            {413}, "larger than this server takes"),
        "over_the_limit_chunked": ({"data": _chunks(UPLOAD_LIMIT + 2**20), "headers": multipart},
                                   {413}, "larger than this server takes"),
        "no_files": ({"files": [("other", ("a.png", image, "image/png"))]}, {400}, "no files"),
        "a_text_field_as_file": ({"files": [("files", (None, "hello"))]}, {400}, "text field"),
        "broken_multipart": ({"data": b"garbage", "headers": {"Content-Type":
                              "multipart/form-data"}}, {400}, "multipart"),
        "texts_to_an_image_model": ({"json": {"texts": ["hello"]}}, {400}, "classifies images"),
        "wrong_content_type": ({"data": image, "headers": {"Content-Type": "image/png"}},
                               {415}, "Content-Type 'image/png'"),
        "no_content_type": ({"data": image}, {415}, "no Content-Type"),
    }
    return cases[name]


@pytest.mark.parametrize("case", [
    "not_an_image", "truncated_jpeg", "fifty_megapixels", "over_the_upload_limit",
    "over_the_limit_chunked", "no_files", "a_text_field_as_file", "broken_multipart",
    "texts_to_an_image_model", "wrong_content_type", "no_content_type",
])
def test_bad_image_requests_get_a_json_error_and_the_server_keeps_serving(
    image_server, image_run, case
):
    url, _ = image_server
    data = image_run[4]
    arguments, statuses, words = _bad_image_request(case, data)
    response = requests.post(url + "/predict", timeout=TIMEOUT, **arguments)
    assert response.status_code in statuses, response.text
    error = response.json()["error"]
    assert words.lower() in error.lower()
    _images_ok(url, data / "face" / "face_007.png")


def test_too_many_files_in_one_request(image_server, image_run):
    url, _ = image_server
    image = (image_run[4] / "face" / "face_000.png").read_bytes()
    files = [("files", (f"{i}.png", image, "image/png")) for i in range(MAX_FILES + 1)]
    response = requests.post(url + "/predict", files=files, timeout=TIMEOUT)
    assert response.status_code == 413
    assert f"at most {MAX_FILES} files" in response.json()["error"]
    response = requests.post(url + "/predict", files=files[:MAX_FILES], timeout=TIMEOUT)
    assert response.status_code == 200 and len(response.json()) == MAX_FILES


@pytest.mark.slow
def test_an_onnx_export_serves_the_answers_of_its_keras_model(image_server, image_run,
                                                              tmp_path):
    """The onnx runtime behind the same app: `transferkit export --format onnx`, then serve the
    export folder; its answers match the Keras model's on the same uploads."""
    from transferkit.cli import main

    export = tmp_path / "onnx"
    assert main(["export", str(image_run[3]), "--format", "onnx", "--output", str(export)]) == 0
    data = image_run[4]
    paths = [data / "face" / "face_008.png", data / "not_face" / "not_face_008.png"]
    files = [("files", (p.name, p.read_bytes(), "image/png")) for p in paths]
    keras_answer = requests.post(image_server[0] + "/predict", files=files, timeout=TIMEOUT)
    predictor = load_predictor(export)
    assert predictor.runtime == "onnx"
    with background_server(create_app(predictor)) as url:
        onnx_answer = requests.post(url + "/predict", files=files, timeout=TIMEOUT)
        assert requests.get(url + "/health", timeout=TIMEOUT).json()["runtime"] == "onnx"
        refused = requests.post(url + "/explain", files=files, timeout=TIMEOUT)
        assert refused.status_code == 501 and "need the Keras model" in refused.json()["error"]
    assert onnx_answer.status_code == 200, onnx_answer.text
    expected = [list(r["scores"].values()) for r in keras_answer.json()]
    _check_results(onnx_answer.json(), expected, predictor.class_names, atol=1e-4)


def test_explain_answers_a_heat_map_over_each_image(image_server, image_run):
    """`POST /explain` takes what `/predict` takes: per image, the prediction `/predict` gives
    and the heat map over the image as the model saw it (a PNG); a label it does not know is a
    400 with a JSON error, and the server keeps serving."""
    import base64

    url, _ = image_server
    data = image_run[4]
    paths = [data / "face" / "face_003.png", data / "not_face" / "not_face_004.png"]
    files = [("files", (p.name, p.read_bytes(), "image/png")) for p in paths]
    predicted = requests.post(url + "/predict", files=files, timeout=TIMEOUT).json()
    answer = requests.post(url + "/explain?method=layercam", files=files, timeout=TIMEOUT)
    assert answer.status_code == 200, answer.text
    for row, expected in zip(answer.json(), predicted):
        assert row["prediction"]["label"] == row["explained"] == expected["label"]
        assert row["method"] == "layercam"
        header, encoded = row["overlay"].split(",", 1)
        assert header == "data:image/png;base64"
        picture = Image.open(io.BytesIO(base64.b64decode(encoded)))
        assert picture.size == (64, 64)  # the run's --image-size: the model's view
    wrong = requests.post(url + "/explain?label=horse", files=files, timeout=TIMEOUT)
    assert wrong.status_code == 400 and "'horse' is not one of" in wrong.json()["error"]
    _images_ok(url, paths[0])


# -- texts ----------------------------------------------------------------------------------


def test_explain_answers_each_word_s_score(text_server):
    url, _ = text_server
    answer = requests.post(url + "/explain", json={"texts": ["a great lovely film"]},
                           timeout=TIMEOUT)
    assert answer.status_code == 200, answer.text
    (row,) = answer.json()
    assert [w["word"] for w in row["words"]] == ["a", "great", "lovely", "film"]
    assert row["method"] == "occlusion" and "overlay" not in row


def test_predict_texts_as_the_predictor_does(text_server):
    url, reference = text_server
    texts = ["a great fun film", "dull boring plot", "the movie was lovely", "awful"]
    response = requests.post(url + "/predict", json={"texts": texts}, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    _check_results(response.json(), reference.predict(texts), reference.class_names)
    metadata = requests.get(url + "/metadata", timeout=TIMEOUT).json()
    assert metadata["task"] == "text" and metadata["encoder"] == reference.facts["encoder"]


@pytest.mark.parametrize("body, statuses, words", [
    ({"texts": []}, {400, 422}, "empty"),
    ({"text": ["hello"]}, {400, 422}, 'no "texts" list'),
    ({"texts": "just one"}, {400, 422}, "list of strings"),
    ({"texts": ["fine", "  "]}, {400, 422}, "texts[1] is empty"),
    ({"texts": ["fine", 3]}, {400, 422}, "texts[1] is a int"),
    ({"texts": ["a film"] * 10_000}, {413}, "10,000 texts"),
    ({"texts": ["long " * 5000]}, {413}, "25,000 characters"),
    (b"{not json", {400}, "not valid JSON"),
    ("files", {400}, "classifies texts"),
])
def test_bad_text_requests_get_a_json_error_and_the_server_keeps_serving(
    text_server, body, statuses, words
):
    url, _ = text_server
    if body == "files":
        arguments = {"files": [("files", ("a.png", b"\x89PNG", "image/png"))]}
    elif isinstance(body, bytes):
        arguments = {"data": body, "headers": {"Content-Type": "application/json"}}
    else:
        arguments = {"json": body}
    response = requests.post(url + "/predict", timeout=TIMEOUT, **arguments)
    assert response.status_code in statuses, response.text
    assert words in response.json()["error"]
    good = requests.post(url + "/predict", json={"texts": ["great fun"]}, timeout=TIMEOUT)
    assert good.status_code == 200 and len(good.json()) == 1


class ExplodesOnWord:
    """A real text predictor, except that a batch holding the text "explode" fails, and so does
    `metadata()`."""

    def __init__(self, predictor):
        self.inner = predictor
        for name in ("task", "class_names", "runtime", "facts", "card"):
            setattr(self, name, getattr(predictor, name))

    def metadata(self):
        raise KeyError("facts")

    def predict(self, items):
        if "explode" in items:
            raise RuntimeError("the model broke")
        return self.inner.predict(items)


def test_a_failure_is_a_json_500_and_the_server_keeps_serving(text_server):
    predictor = ExplodesOnWord(text_server[1])  # not used elsewhere while this server runs
    with background_server(create_app(predictor, max_wait_ms=0)) as url:
        response = requests.post(url + "/predict", json={"texts": ["explode"]}, timeout=TIMEOUT)
        assert response.status_code == 500
        assert "failed on texts[0] (RuntimeError: the model broke)" in response.json()["error"]
        response = requests.post(url + "/predict", json={"texts": ["fun"]}, timeout=TIMEOUT)
        assert response.status_code == 200
        health = requests.get(url + "/health", timeout=TIMEOUT).json()["batching"]
        assert health["failed_batches"] == 1 and health["batches"] == 1
        response = requests.get(url + "/metadata", timeout=TIMEOUT)  # any other failure
        assert response.status_code == 500
        assert "KeyError: 'facts'" in response.json()["error"]
        assert requests.get(url + "/health", timeout=TIMEOUT).json()["status"] == "ok"


def test_bad_limits_say_which_and_why():
    with pytest.raises(InputError, match=r"`max_pixels` must be an int from 1 to 200,000,000. "
                                         r"Received: max_pixels=0"):
        Limits(max_pixels=0)
    model = SimpleNamespace(task="image", class_names=["a", "b"])  # nothing is loaded or run
    with pytest.raises(InputError, match="`max_texts` must be an int from 1 to 10,000"):
        create_app(model, max_texts=-1)
    with pytest.raises(InputError, match="`max_batch` must be an int from 1 to 1024"):
        create_app(model, max_batch=0)
    with pytest.raises(InputError, match="Cannot serve a model whose task is 'audio'"):
        create_app(SimpleNamespace(task="audio", class_names=["a"]))
