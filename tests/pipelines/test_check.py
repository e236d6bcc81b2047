"""`transferkit check`: counts, label issues and duplicates without training a model."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from helpers import write_table
from transferkit.pipelines.check import near_duplicates


def test_near_duplicates_by_cosine():
    base = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.1, 0.0], [0.0, 0.0, 1.0]])
    pairs = near_duplicates(np.concatenate([base, base[:1] * 3]))  # row 4: row 0, scaled
    assert [(i, j) for i, j, _ in pairs] == [(0, 4), (0, 2), (2, 4)]  # ties by index
    assert abs(pairs[0][2] - 1.0) < 1e-6
    assert near_duplicates(base, threshold=0.999) == []


@pytest.mark.slow  # ~11 s: EfficientNet-Lite0 features at 224 px
def test_check_images_finds_a_file_in_two_classes(faces, tmp_path):
    from conftest import _run_cli

    data = tmp_path / "data"
    shutil.copytree(faces, data)
    shutil.copy(data / "face" / "face_000.png", data / "not_face" / "copy_of_face_000.png")
    out = tmp_path / "check"
    code, stdout, err = _run_cli(["check", data, "--output", out, "--json"])
    assert code == 0, err
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["class_counts"]["train"]["not_face"] + result["class_counts"]["validation"][
        "not_face"] == 21
    assert result["label_issues_checked"] and result["folds"] == 5
    assert sum(n for kind, n in result["duplicates"].items() if kind.startswith("exact")) == 1
    assert result["duplicates_with_other_labels"] >= 1
    table = pd.read_csv(out / "duplicates.csv")
    exact = table[table["kind"] == "exact"].iloc[0]
    assert {exact["label_a"], exact["label_b"]} == {"face", "not_face"}
    assert not (out / "model.keras").exists() and (out / "summary.txt").is_file()
    assert "Label issues:" in err  # progress and summary lines go to stderr with --json


def test_check_text_reports_conflicting_duplicate_texts(bert_folder, tmp_path):
    from transferkit.pipelines.check import check_data

    table = write_table(tmp_path / "reviews.csv", n=80, bad_rows=False)
    frame = pd.read_csv(table)
    twin = frame.iloc[[0]].copy()
    twin["sentiment"] = "positive" if twin["sentiment"].iloc[0] == "negative" else "negative"
    pd.concat([frame, twin]).to_csv(table, index=False)
    result = check_data(table, output=tmp_path / "check", encoder=str(bert_folder),
                        log=lambda line: None)
    assert result["kind"] == "text" and result["label_issues_checked"]
    assert sum(n for kind, n in result["duplicates"].items() if kind.startswith("exact")) >= 1
    assert result["duplicates_with_other_labels"] >= 1


def test_check_of_an_image_table_checks_each_target(tmp_path):
    """A table of image paths: the target comes from its columns (a `target` column: regression)
    and a planted wrong number is the first suspect; `--target multi-label` reads its 0/1
    columns, counts positives per label and checks the label sets."""
    from transferkit.pipelines.check import check_data
    from transferkit.testing import TINY_BACKBONE, write_image_targets

    table = write_image_targets(tmp_path / "data", 40, flags=True)
    frame = pd.read_csv(table)
    frame.loc[7, "target"] = 900.0  # brightness is 0-100
    frame.to_csv(table, index=False)
    lines = []
    result = check_data(table, output=tmp_path / "regression", backbone=TINY_BACKBONE,
                        log=lines.append)
    assert result["kind"] == "images" and result["target"] == "regression"
    assert "Target: regression, from the table's 'target' column (--target sets it)" in lines
    assert sum(counts["n"] for counts in result["class_counts"].values()) == 40
    issues = pd.read_csv(tmp_path / "regression" / "label_issues.csv", dtype=str)
    assert issues["path"].iloc[0].endswith(frame.loc[7, "path"])
    assert issues["given_label"].iloc[0] == "900"
    result = check_data(table, output=tmp_path / "multi", backbone=TINY_BACKBONE,
                        target="multi-label", log=lines.append)
    assert result["target"] == "multi-label" and result["label_issues_checked"]
    assert sum(split["face"] for split in result["class_counts"].values()) == 20
    assert any(line.startswith("Labels: the 0/1 columns face, bright") for line in lines)


def test_check_of_a_folder_is_single_label_only(faces, tmp_path):
    from transferkit.errors import InputError
    from transferkit.pipelines.check import check_data

    with pytest.raises(InputError, match="--target regression needs a table of image paths"):
        check_data(faces, output=tmp_path / "c", target="regression", log=lambda line: None)
    assert not (tmp_path / "c").exists()
