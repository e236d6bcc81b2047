"""Batch prediction and embeddings into Parquet: the same numbers as the classifier, resumable."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest

import transferkit
from transferkit.batch.output import ShardedParquet, read_output
from transferkit.cli import main
from transferkit.errors import InputError


def _cli(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def image_inputs(tmp_path_factory, faces):
    """A list file: the 40 faces, then a file that is not there."""
    paths = sorted(str(p) for p in faces.rglob("*.png"))
    listing = tmp_path_factory.mktemp("inputs") / "images.txt"
    listing.write_text("\n".join(paths + ["missing.png"]) + "\n")
    return listing, paths


def test_predict_writes_the_classifier_s_scores_and_lists_unreadable_inputs(
        image_run, image_inputs, tmp_path):
    run = image_run[3]
    listing, paths = image_inputs
    output = tmp_path / "predictions.parquet"
    summary = transferkit.batch_predict(run, listing, output, shard_size=16, progress=False)
    assert (summary["inputs"], summary["done"], summary["errors"]) == (41, 41, 1)
    assert len(ShardedParquet(output).pieces()) == 3  # 41 inputs in shards of 16
    table = read_output(output)
    assert table["index"].tolist() == list(range(41))
    assert table["path"].tolist() == paths + [str(listing.parent / "missing.png")]
    expected = transferkit.load(run).predict_proba(paths)
    names = ["face", "not_face"]
    got = table[[f"prob_{n}" for n in names]].to_numpy()[:40]
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert table["label"][:40].tolist() == [names[i] for i in expected.argmax(1)]
    np.testing.assert_allclose(table["score"][:40], expected.max(1), atol=1e-5)
    assert table["error"][:40].isna().all()
    last = table.iloc[40]
    assert "no such file" in last["error"] and pd.isna(last["label"]) and np.isnan(last["score"])


def test_a_rerun_continues_where_the_last_one_stopped(image_run, image_inputs, tmp_path):
    run = image_run[3]
    listing, _ = image_inputs
    output = tmp_path / "predictions.parquet"
    transferkit.batch_predict(run, listing, output, shard_size=10, progress=False)
    pieces = ShardedParquet(output).pieces()
    first = read_output(output)
    pieces[2].unlink()  # as if the job had been killed before its third shard
    (output / ".part-0000000030-x.parquet.tmp-abc.parquet").write_bytes(b"half a file")
    kept = {p.name: p.stat().st_mtime_ns for p in pieces if p.exists()}
    summary = transferkit.batch_predict(run, listing, output, shard_size=10, progress=False)
    assert (summary["resumed"], summary["done"]) == (31, 10)
    after = ShardedParquet(output).pieces()
    assert {p.name: p.stat().st_mtime_ns for p in after if p.name in kept} == kept
    assert not list(output.glob(".*tmp*"))
    again = read_output(output)
    assert again.drop(columns="error").equals(first.drop(columns="error"))
    summary = transferkit.batch_predict(run, listing, output, progress=False)
    assert (summary["resumed"], summary["done"]) == (41, 0)


def test_an_output_of_another_job_is_refused(image_run, image_inputs, faces, tmp_path):
    run = image_run[3]
    listing, _ = image_inputs
    output = tmp_path / "predictions.parquet"
    transferkit.batch_predict(run, faces / "face", output, progress=False)
    with pytest.raises(InputError, match="holds the output of other inputs.*new --output"):
        transferkit.batch_predict(run, listing, output, progress=False)
    with pytest.raises(InputError, match="holds the output of another command"):
        transferkit.batch_embed(run, faces / "face", output, progress=False)
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    with pytest.raises(InputError, match="not empty and was not written by transferkit"):
        transferkit.batch_predict(run, listing, other, progress=False)
    assert (other / "mine.txt").read_text() == "keep me"
    (tmp_path / "file.parquet").write_text("")
    with pytest.raises(InputError, match="is a file"):
        transferkit.batch_predict(run, listing, tmp_path / "file.parquet", progress=False)


@pytest.mark.slow  # ~5-10 s each; the default suite keeps one embed (the CLI's)
def test_embed_a_backbone_equals_extract_features(faces, tmp_path):
    paths = sorted(str(p) for p in (faces / "face").glob("*.png"))[:8]
    output = tmp_path / "features.parquet"
    summary = transferkit.batch_embed("efficientnet_lite0", paths, output, runtime="keras",
                                progress=False)
    assert summary["done"] == 8
    table = read_output(output)
    vectors = np.stack(table["embedding"].to_numpy())
    expected = transferkit.extract_features("efficientnet_lite0", paths, runtime="keras",
                                            cache=False)
    assert vectors.shape == (8, 1280) and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, expected, atol=1e-5)


@pytest.mark.slow  # ~5-10 s each; the default suite keeps one embed (the CLI's)
def test_embed_a_trained_image_model_gives_its_fine_tuned_features(image_run, faces, tmp_path):
    run = image_run[3]
    folder = faces / "not_face"
    transferkit.batch_embed(run, folder, tmp_path / "features.parquet", progress=False)
    table = read_output(tmp_path / "features.parquet")
    classifier = transferkit.load(run)
    model = classifier.get_encoder().feature_model()
    features = model.predict(_resized(table["path"], classifier.input_size), verbose=0)
    np.testing.assert_allclose(np.stack(table["embedding"].to_numpy()), features, atol=1e-4)


def _resized(paths, size):
    from transferkit.data.images import load_resized

    return np.stack([load_resized(p, size) for p in paths])


@pytest.mark.slow  # ~5-10 s each; the default suite keeps one embed (the CLI's)
def test_text_predict_and_embed_from_a_table(sentence_run, bert_folder, tmp_path):
    run, table_path = sentence_run[3], sentence_run[4]
    shutil.copy(table_path, tmp_path / "reviews.csv")
    with open(tmp_path / "reviews.csv", "a") as handle:
        handle.write("99,,positive\n")  # no text: left out, and said so
    summary = transferkit.batch_predict(run, tmp_path / "reviews.csv", tmp_path / "p.parquet",
                                  shard_size=25, progress=False)
    assert summary["skipped"] == [{"line": 62, "reason": "empty or missing text"}]
    table = read_output(tmp_path / "p.parquet")
    classifier = transferkit.load(run)
    expected = classifier.predict_proba(table["text"].tolist())
    np.testing.assert_allclose(table[["prob_negative", "prob_positive"]], expected, atol=1e-5)

    transferkit.batch_embed(bert_folder, tmp_path / "reviews.csv", tmp_path / "e.parquet",
                      progress=False)
    vectors = np.stack(read_output(tmp_path / "e.parquet")["embedding"].to_numpy())
    texts = table["text"].tolist()
    fitted = transferkit.TextClassifier(encoder=bert_folder, features="sentence")
    fitted.fit(texts, ["a", "b"] * (len(texts) // 2), epochs=1, verbose=0)
    np.testing.assert_allclose(vectors, fitted.embed(texts), atol=1e-5)


def test_the_command_line_writes_and_summarises(text_run, tmp_path, capsys):
    run, table = text_run[3], text_run[4]
    output = tmp_path / "p.parquet"
    code, out, _ = _cli(["predict", run, table, "--output", output, "--shard-size", "20"],
                        capsys)
    assert code == 0
    assert "61 of 61 inputs written" in out and str(output) in out
    assert "1 left out before the job: 1 empty or missing text (line 62); listed in --json" in out
    code, out, _ = _cli(["predict", run, table, "--output", output, "--json"], capsys)
    summary = json.loads(out.strip().splitlines()[-1])
    assert (summary["resumed"], summary["done"]) == (61, 0)
    code, out, _ = _cli(["embed", run, table, "--output", tmp_path / "e.parquet", "--json"],
                        capsys)
    summary = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and summary["done"] == 61
    assert len(read_output(tmp_path / "e.parquet")["embedding"][0]) > 0


def test_command_line_mistakes_say_what_to_do(image_run, faces, tmp_path, capsys):
    run = image_run[3]
    code, _, err = _cli(["predict", run, faces / "face" / "face_000.png", "--ray"], capsys)
    assert code == 1 and "--ray runs a batch job: add --output" in err
    code, _, err = _cli(["predict", run, faces, "--output", tmp_path / "o", "--workers", "2"],
                        capsys)
    assert code == 1 and "--workers is for Ray" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = _cli(["predict", run, empty, "--output", tmp_path / "o"], capsys)
    assert code == 1 and "no image files in this folder" in err
    code, _, err = _cli(["embed", "no_such_backbone", faces, "--output", tmp_path / "o"], capsys)
    assert code == 1 and "must be an image backbone" in err
    code, _, err = _cli(["predict", run, faces, "--output", tmp_path / "o",
                         "--shard-size", "0"], capsys)
    assert code == 1 and "--shard-size" in err
    assert not os.path.exists(tmp_path / "o")
