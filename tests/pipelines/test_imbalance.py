"""Imbalanced classes: a summary that leads with macro F1 and balanced accuracy from 3x; class
weights on by default from 10x (`auto`), or whenever asked (`balanced`)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from transferkit.data.labels import balanced_class_weights, class_weights_for
from transferkit.testing import TINY_BACKBONE


def test_balanced_weights():
    weights, ratio = balanced_class_weights(np.array([0] * 30 + [1] * 10), 2)
    assert ratio == 3.0 and weights == pytest.approx({0: 40 / 60, 1: 40 / 20})
    weights, ratio = balanced_class_weights(np.array([0] * 10 + [1] * 10), 2)
    assert weights is None and ratio == 1.0
    weights, _ = balanced_class_weights(np.array([0] * 30 + [2] * 5), 3)  # class 1 absent
    assert set(weights) == {0, 2}


@pytest.mark.parametrize(("majority", "mode", "weighted"), [
    (99, "auto", False), (100, "auto", True), (11, "balanced", True), (10, "balanced", False),
    (500, "none", False),
])
def test_which_counts_get_weights(majority, mode, weighted):
    """`auto` weighs from 10x (measured: below it the weights cost accuracy), `balanced` always."""
    metadata = {}
    labels = np.array([0] * majority + [1] * 10)
    weights = class_weights_for(labels, ["big", "small"], mode, metadata)
    assert (weights is not None) is weighted
    assert ("class_weights" in metadata) is weighted
    assert metadata["imbalance"] == pytest.approx(majority / 10)


@pytest.fixture(scope="module")
def imbalanced_faces(faces, tmp_path_factory):
    data = tmp_path_factory.mktemp("imbalanced") / "data"
    shutil.copytree(faces, data)
    for path in sorted((data / "not_face").iterdir())[6:]:
        path.unlink()  # 20 faces, 6 non-faces
    return data


@pytest.mark.parametrize("class_weight", ["balanced", pytest.param("auto", marks=pytest.mark.slow)])
def test_an_imbalanced_run_says_so(imbalanced_faces, tmp_path, class_weight):
    import transferkit

    result = transferkit.train_images(
        imbalanced_faces, backbone=TINY_BACKBONE, image_size=32, epochs=2, fine_tune_epochs=0,
        augment="none", class_weight=class_weight, output=tmp_path / "run", verbose=0, log=lambda line: None,
    )
    summary = result["summary"]
    body = summary.splitlines()[3:6]  # after the title, its rule and the examples line
    assert body[0].startswith("macro F1:") and body[1].startswith("balanced accuracy:")
    assert "classes are imbalanced" in body[2]
    assert "train class counts" in summary and "face 16, not_face 5" in summary
    classifier = transferkit.load(tmp_path / "run")
    weights = classifier.metadata.get("class_weights")
    if class_weight == "balanced":
        assert weights == pytest.approx({"face": 21 / 32, "not_face": 21 / 10}, abs=1e-4)
        assert "class weights on" in summary
    else:  # 3.2x: below auto's 10x
        assert weights is None and "class weights off" in summary
