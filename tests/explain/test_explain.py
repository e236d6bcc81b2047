"""Explanations (issue 30): the class activation maps against closed forms they must equal on
transferkit's linear head, the map's placement on the photo, word occlusion on a toy model whose
cue words are known, and `transferkit explain` as a user runs it (files, --json, bad input).
The parity with an independent implementation (Captum on the PyTorch EfficientNet-Lite0) is in
`test_explain_reference.py` (slow)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import transferkit
from transferkit.explain.cams import METHODS, class_activation_maps
from transferkit.explain.gradients import output_gradients
from transferkit.explain.text import METHODS as TEXT_METHODS


def _cli(argv) -> tuple[int, str, str]:
    from conftest import _run_cli

    return _run_cli([str(a) for a in argv])


def _one_line(code: int, err: str) -> str:
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


@pytest.fixture(scope="module")
def image_model(image_run):
    code, _, err, run, data = image_run
    assert code == 0, err
    return transferkit.load(run), data


def _maps_and_kernel(model, photos):
    maps, head = model.get_encoder().feature_map_models(model.network)
    pixels = np.stack([transferkit.data.images.load_resized(p, model.input_size,
                                                            model.resize_policy)
                       for p in photos]).astype(np.float32)
    activations = np.asarray(maps.predict(pixels, verbose=0), dtype=np.float64)
    kernel = model.network.get_layer("classifier").get_weights()[0].astype(np.float64)
    return activations, kernel, head


def test_grad_cam_of_the_linear_head_is_the_dense_kernel_s_cam(image_model):
    """After pooling the head is linear, so d logit / d map is the kernel over h*w at every pixel:
    Grad-CAM must be ReLU(sum_k w_k A_k) / (h w) (Zhou et al.'s CAM), and LayerCAM and
    Grad-CAM++ their closed forms for a constant gradient. The tape is not asked for these."""
    model, data = image_model
    photos = sorted(str(p) for p in Path(data).rglob("*.png"))[:4]
    activations, kernel, head = _maps_and_kernel(model, photos)
    n, h, w, _ = activations.shape
    assert model.num_logits == 1  # two classes: one logit; class 0 is its negative
    for sign in (1.0, -1.0):
        weights = np.full((n, 1), sign, dtype=np.float32)
        _, gradients = output_gradients(head, activations, weights)
        slope = sign * kernel[:, 0] / (h * w)
        np.testing.assert_allclose(gradients, np.broadcast_to(slope, gradients.shape),
                                   rtol=1e-4, atol=1e-9)
        expected = {
            "gradcam": activations @ slope,
            "layercam": activations @ np.maximum(slope, 0),
        }
        totals = activations.sum(axis=(1, 2))  # (n, c)
        alpha = slope ** 2 / (2 * slope ** 2 + totals * slope ** 3 + 1e-7)
        expected["gradcam++"] = np.einsum("nhwc,nc->nhw", activations,
                                          np.maximum(slope, 0) * alpha * h * w)
        for method in METHODS:
            got = class_activation_maps(activations, gradients, method)
            np.testing.assert_allclose(got, np.maximum(expected[method], 0), rtol=2e-3,
                                       atol=1e-6 * np.abs(expected[method]).max())


def test_the_map_is_placed_on_the_part_of_the_photo_the_model_saw(image_model):
    """A wide photo, centre-cropped to the model's square: the map covers the middle square of
    the photo (at the photo's size), and the strips the model never saw are 0."""
    model, data = image_model
    photo = np.asarray(transferkit.data.images.load_image(
        sorted(Path(data).rglob("*.png"))[0]))
    wide = np.concatenate([photo, photo, photo], axis=1)  # 3:1, so 2/3 of it is cropped away
    (result,) = model.explain([wide], method="layercam")
    height, width = wide.shape[:2]
    top, left, seen_h, seen_w = result["seen"]
    assert result["map"].shape == (height, width)
    assert (top, seen_h) == (0, height) and abs(seen_w - height) <= 1
    assert abs(left - (width - seen_w) / 2) <= 1
    assert not result["map"][:, :left].any() and not result["map"][:, left + seen_w:].any()
    assert result["map"][:, left:left + seen_w].max() > 0
    assert result["explained"] == result["prediction"]["label"]


def test_the_explained_class_can_be_chosen(image_model):
    model, data = image_model
    photo = str(sorted(Path(data).rglob("*.png"))[0])
    first, second = (model.explain([photo], label=name)[0] for name in model.class_names)
    assert (first["explained"], second["explained"]) == tuple(model.class_names)
    assert first["score"] == pytest.approx(1 - second["score"], abs=1e-6)
    # One logit: the two classes' gradients are opposite, so their evidence is where the other
    # class's is not; both maps cannot be the same.
    assert not np.allclose(first["map"], second["map"])


@pytest.mark.parametrize("method", TEXT_METHODS)
def test_words_that_decide_a_toy_review_score_highest(text_run, method):
    """The toy reviews are neutral filler words around cue words that give the label away (the
    shared run's model is weak, 3 epochs, yet it learned them): explaining `positive`, the
    positive cue must score highest and the negative cue lowest, whatever the prediction."""
    code, _, err, run, _ = text_run
    assert code == 0, err
    model = transferkit.load(run)
    texts = ["the movie was quite a great story", "it was really a dull plot film"]
    good, bad = model.explain(texts, label="positive", method=method)
    for result, text in zip((good, bad), texts):
        assert [w["word"] for w in result["words"]] == text.split()
        assert result["explained"] == "positive" and result["method"] == method
    assert max(good["words"], key=lambda w: w["score"])["word"] == "great"
    assert min(bad["words"], key=lambda w: w["score"])["word"] == "dull"
    assert min(w["score"] for w in bad["words"]) < 0 < max(w["score"] for w in good["words"])


def test_words_past_max_length_score_zero_and_cost_no_pass(text_run, monkeypatch):
    """A text far longer than the model's `max_length` tokens: the words it cuts off cannot move
    the prediction, get 0, and are not occluded (one forward pass per seen word, not per word)."""
    code, _, err, run, _ = text_run
    assert code == 0, err
    model = transferkit.load(run)
    length = model.tokenizer.sequence_length
    text = "a great story " + " ".join(["plot"] * 3000)
    passes = []
    original = model.predict_proba
    monkeypatch.setattr(model, "predict_proba", lambda x: passes.append(len(x)) or original(x))
    (result,) = model.explain([text], label="positive")
    words = result["words"]
    assert len(words) == 3003 and all(w["score"] == 0.0 for w in words[length:])
    assert max(words[:3], key=lambda w: w["score"])["word"] == "great"
    assert sum(passes) <= 2 + length  # the text twice (predict's answer, the base), seen words


def _logits_scaled(model, text: str, scale: float) -> np.ndarray:
    """The model's logits for `text` with its words' token embeddings multiplied by `scale`."""
    from transferkit.explain.text import _scaled, _token_embedding, _word_positions

    spans = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    inputs, positions = _word_positions(model, text, spans)
    scales = np.ones((1, inputs["token_ids"].shape[1], 1), np.float32)
    for start, end in positions:
        scales[0, start:end] = scale
    with _scaled(_token_embedding(model), scales):
        return np.asarray(model.network(inputs, training=False))[0]


@pytest.mark.parametrize("fixture", ["text_run", "sentence_run"])
def test_integrated_gradients_add_up_to_the_logit_s_change_from_no_words(request, fixture):
    """Completeness (Sundararajan et al. 2017), on GloVe + BiLSTM and on the tiny BERT (whose
    sub-word tokens are summed into words): the word scores add up to the explained logit's change
    from the baseline (no token embeddings for the words; [CLS] and [SEP] kept) to the text, up to the midpoint rule's error. The
    two runs' heads end in one logit (binary), so class 1's score is that logit."""
    code, _, err, run, _ = request.getfixturevalue(fixture)
    assert code == 0, err
    model = transferkit.load(run)
    text = "the movie was quite a great story, unbelievably"
    (result,) = model.explain([text], label=model.class_names[1], method="integrated-gradients")
    assert [w["word"] for w in result["words"]] == text.split()
    change = _logits_scaled(model, text, 1.0)[-1] - _logits_scaled(model, text, 0.0)[-1]
    total = sum(w["score"] for w in result["words"])
    assert abs(change) > 1e-3 and total == pytest.approx(change, rel=0.05, abs=1e-3)
    assert len({round(w["score"], 9) for w in result["words"]}) == len(result["words"])
    # Every token of the words belongs to one word, in order ([CLS] and [SEP] to none).
    from transferkit.explain.text import _word_positions

    spans = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    inputs, positions = _word_positions(model, text, spans)
    real = int((inputs["padding_mask"] if "padding_mask" in inputs else inputs["token_ids"]).astype(
        bool).sum())
    specials = 2 if fixture == "sentence_run" else 0
    assert positions[0][0] == specials // 2 and positions[-1][1] == real - specials // 2
    assert all(end > start for start, end in positions)
    assert all(a[1] == b[0] for a, b in zip(positions, positions[1:]))


def test_explain_images_from_the_command_line(image_run, tmp_path):
    code, _, err, run, data = image_run
    photos = sorted(Path(data).rglob("*.png"))[:2]
    out = tmp_path / "why"
    code, stdout, err = _cli(["explain", run, *photos, tmp_path / "missing.png", "--output", out,
                              "--method", "gradcam++", "--json"])
    assert code == 0, err
    rows = json.loads(stdout.strip().splitlines()[-1])
    assert [row.get("skipped") is not None for row in rows] == [False, False, True]
    for row, photo in zip(rows, photos):
        png, npy = map(Path, row["files"])
        assert png.stat().st_size > 2_000 and row["method"] == "gradcam++"
        heat = np.load(npy)
        assert heat.shape == transferkit.data.images.load_image(photo).shape[:2]
        assert row["explained"] == row["prediction"]["label"] and "map" not in row


@pytest.mark.parametrize(("args", "said"), [
    (["{missing}"], "no such file"),
    (["{photo}", "--label", "horse"], "'horse' is not one of the model's labels: face, not_face"),
])
def test_explain_bad_input_is_one_line(image_run, tmp_path, args, said):
    _, _, _, run, data = image_run
    photo = sorted(Path(data).rglob("*.png"))[0]
    args = [a.format(missing=tmp_path / "missing.png", photo=photo) for a in args]
    code, _, err = _cli(["explain", run, *args, "--output", tmp_path / "out"])
    assert said in _one_line(code, err)


def test_explain_text_writes_a_page_with_every_word(text_run, tmp_path):
    _, _, _, run, _ = text_run
    text = "a <b>great</b> & lovely film"
    code, stdout, err = _cli(["explain", run, text, "--output", tmp_path / "out", "--json"])
    assert code == 0, err
    (row,) = json.loads(stdout.strip().splitlines()[-1])
    assert row["method"] == "occlusion" and len(row["words"]) == 5
    page = Path(row["files"][0]).read_text(encoding="utf-8")
    assert "&lt;b&gt;great&lt;/b&gt;" in page and "<b>great" not in page  # escaped
    assert page.count("<span ") == 5
    code, _, err = _cli(["explain", run, text, "--method", "gradcam", "--output", tmp_path / "o"])
    assert "explained by 'occlusion' or 'integrated-gradients'" in _one_line(code, err)


def test_reports_show_why_beside_each_mistake(image_model, text_run, tmp_path):
    """mistakes.png gets each photo's heat map beside it (a tile twice as wide, plus a gap);
    mistakes.txt the words that pushed each text toward its wrong prediction."""
    from transferkit.explain.images import overlays
    from transferkit.reports.plots import _side_by_side

    model, data = image_model
    photos = [str(p) for p in sorted(Path(data).rglob("*.png"))[:2]]
    pictures = overlays(model, [*photos, str(tmp_path / "missing.png")])
    assert pictures[-1] is None
    for photo, picture in zip(photos, pictures[:2]):
        original = transferkit.data.images.load_image(photo)
        assert picture.shape == original.shape and picture.dtype == np.uint8
        assert not np.array_equal(picture, original)
        tile = _side_by_side(photo, picture)
        assert tile.shape[0] == original.shape[0] and tile.shape[1] > 2 * original.shape[1]
    _, _, _, run, table = text_run
    metrics = transferkit.load(run).evaluate(table, report_dir=tmp_path / "report")
    text = Path(metrics["files"]["mistakes"]).read_text(encoding="utf-8")
    wrong = round(metrics["n"] * (1 - metrics["accuracy"]))
    assert wrong == 0 or "   why: " in text
