"""`transferkit rank`: LogME and k-NN accuracy per candidate, best first."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import write_table
from transferkit.pipelines.rank import knn_accuracy, rank_backbones


def test_knn_accuracy_tells_informative_features_from_noise():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 40)
    informative = np.eye(3)[labels] * 3 + rng.normal(0, 0.5, (120, 3))
    assert knn_accuracy(informative, labels) > 0.95
    assert knn_accuracy(rng.normal(size=(120, 3)), labels) < 0.6


def test_text_encoders_are_ranked(bert_folder, tmp_path):
    table = write_table(tmp_path / "reviews.csv", n=80, bad_rows=False)
    result = rank_backbones(table, backbones=[str(bert_folder), f"{bert_folder}:layers"],
                            per_class=30, log=lambda line: None)
    assert result["kind"] == "text" and len(result["rows"]) == 2
    scores = [row["logme"] for row in result["rows"]]
    assert scores == sorted(scores, reverse=True)
    assert all(np.isfinite(row["logme"]) and row["parameters"] > 0 for row in result["rows"])
    assert result["examples"] == 56  # 80 texts, 10% test and 20% validation out: 28 a class


def test_text_candidates_are_every_installed_sentence_encoder_and_glove():
    from transferkit.backbones.sentence_encoders import get_sentence_encoder_spec
    from transferkit.pipelines.rank import default_text_candidates

    candidates = default_text_candidates()
    assert candidates[:2] == ["minilm", "minilm:layers"] and candidates[-1] == "glove"
    mpnet = get_sentence_encoder_spec("mpnet").available()  # its extra installed or not
    assert ("mpnet" in candidates) == mpnet and ("mpnet:layers" in candidates) == mpnet


@pytest.mark.slow  # ~15 s: features at 224 px, and one head trained
def test_rank_images_from_the_command_line(faces):
    from conftest import _run_cli

    code, out, err = _run_cli(["rank", faces, "--backbones", "efficientnet_lite0",
                               "--per-class", "10", "--train-top", "1", "--json"])
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    (first,) = result["rows"]  # an unknown name is refused before any work (tests/corpus)
    assert first["backbone"] == "efficientnet_lite0" and first["image_size"] == "224x224"
    assert first["parameters"] > 3_000_000 and first["trained_split"] == "validation"
