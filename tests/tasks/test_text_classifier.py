"""TextClassifier, `pipeline` and `transferkit train text`, on tiny data and tiny encoders.

The word-vector model trains on a small GloVe-format file written here (positive and negative words
point in opposite directions); the transformer model uses the tiny random BERT folder of
`test_text_sentence_encoders`. Both learn a toy sentiment task in a few epochs, so the tests check
real learning, saving, loading and the run folder, in seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

import transferkit
from test_text_sentence_encoders import tiny_bert_folder
from transferkit.cli import main
from transferkit.errors import DataError, InputError
from transferkit.tasks.base import ClassLabels, labels_layer
from transferkit.tasks.text_classifier import TextClassifier, pipeline

POSITIVE = ["good", "great", "fun", "lovely", "superb"]
NEGATIVE = ["bad", "dull", "boring", "awful", "poor"]
FILLER = ["the", "movie", "film", "was", "plot", "really", "quite", "a", "story", "it"]


def toy_texts(n, seed=0, classes=("negative", "positive"), cues=1, fillers=5):
    """`n` toy reviews: `fillers` neutral words around `cues` words that give the label away."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        label = classes[i % len(classes)]
        cue = {"positive": POSITIVE, "negative": NEGATIVE, "neutral": ["okay", "fine"]}[label]
        words = list(rng.choice(FILLER, fillers)) + [str(w) for w in rng.choice(cue, cues)]
        rng.shuffle(words)
        texts.append(" ".join(words).capitalize() + rng.choice([".", "!", " ..."]))
        labels.append(label)
    return texts, labels


@pytest.fixture(scope="module")
def vectors_file(tmp_path_factory):
    """GloVe-format vectors: positive words along +e0, negative along -e0, filler random."""
    rng = np.random.default_rng(0)
    lines = []
    for word in POSITIVE + NEGATIVE + FILLER + ["okay", "fine"]:
        vector = rng.normal(0, 0.3, 8)
        vector[0] += 2.0 if word in POSITIVE else -2.0 if word in NEGATIVE else 0.0
        vector[1] += 2.0 if word in ("okay", "fine") else 0.0
        lines.append(word + " " + " ".join(f"{v:.5f}" for v in vector))
    path = tmp_path_factory.mktemp("vectors") / "toy.vec.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory):
    return tiny_bert_folder(
        tmp_path_factory.mktemp("bert"), hidden=32, intermediate=64, layer_scale=0.1
    )


@pytest.fixture(scope="module")
def word_classifier(vectors_file):
    texts, labels = toy_texts(96)
    clf = TextClassifier(
        "glove-bilstm", word_vectors=vectors_file, epochs=6, learning_rate=3e-3, verbose=0
    )
    return clf.fit(texts, labels, validation_data=toy_texts(32, seed=1))


def accuracy(clf, texts, labels):
    return np.mean([p["label"] == y for p, y in zip(clf.predict(texts), labels)])


def test_word_vector_classifier_learns(word_classifier):
    texts, labels = toy_texts(40, seed=2)
    assert word_classifier.class_names == ["negative", "positive"]
    assert accuracy(word_classifier, texts, labels) >= 0.9
    assert word_classifier.coverage["vocabulary_coverage"] == 1.0
    assert word_classifier.coverage["token_coverage"] == 1.0


def test_word_model_shape_follows_the_issue(word_classifier):
    model = word_classifier.model
    embedding = model.get_layer("word_embedding")
    assert embedding.output_dim == 8  # the vectors' width, not max_length
    assert not embedding.trainable  # frozen in the head phase
    assert model.get_layer("bilstm_1").forward_layer.units == 150
    assert model.get_layer("dense").units == 6
    assert model.get_layer("predictions").units == 1  # sigmoid for two classes
    assert isinstance(model.layers[-1], ClassLabels)
    assert model.layers[-1].task == "text"


def test_predict_shapes_like_a_hugging_face_pipeline(word_classifier):
    results = word_classifier.predict(["A great, fun film!", "dull and boring"])
    assert [r["label"] for r in results] == ["positive", "negative"]
    assert all(set(r) == {"label", "score"} and 0.5 <= r["score"] <= 1.0 for r in results)
    single = word_classifier.predict("superb")
    assert len(single) == 1 and single[0]["label"] == "positive"
    assert word_classifier.predict([]) == []
    probabilities = word_classifier.predict_proba(["good", "bad", ""])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)


def test_save_and_load_give_the_same_predictions(word_classifier, tmp_path):
    texts, _ = toy_texts(10, seed=3)
    path = word_classifier.save(tmp_path / "model.keras")
    loaded = transferkit.load(path)
    assert isinstance(loaded, TextClassifier) and loaded.class_names == ["negative", "positive"]
    np.testing.assert_allclose(
        loaded.predict_proba(texts), word_classifier.predict_proba(texts), atol=1e-6
    )
    # The file is plain Keras: it loads in safe mode, and the labels layer holds the tokenizer.
    model = keras.saving.load_model(path, safe_mode=True, compile=False)
    metadata = labels_layer(model).metadata
    assert metadata["preprocessor"]["kind"] == "text_vectorization"
    assert "great" in metadata["preprocessor"]["vocabulary"]
    classify = pipeline(path)
    assert classify(texts) == loaded.predict(texts)
    assert classify("lovely")[0]["label"] == "positive"


def test_fine_tuning_unfreezes_the_embedding(vectors_file):
    texts, labels = toy_texts(64)
    clf = TextClassifier(
        "glove-bilstm", word_vectors=vectors_file, epochs=2, learning_rate=3e-3, verbose=0
    )
    clf.fit(texts, labels)
    before = clf.model.get_layer("word_embedding").get_weights()[0].copy()
    clf.fine_tune(texts, labels, epochs=1)
    after = clf.model.get_layer("word_embedding").get_weights()[0]
    assert clf.model.get_layer("word_embedding").trainable
    assert not np.allclose(before, after)
    assert clf.metadata["fine_tuned"] is True
    assert [row["phase"] for row in clf.history] == ["head", "head", "fine_tune"]


def test_three_classes_use_softmax(vectors_file):
    classes = ("negative", "neutral", "positive")
    texts, labels = toy_texts(90, classes=classes)
    clf = TextClassifier(
        "glove-bilstm", word_vectors=vectors_file, epochs=8, learning_rate=3e-3, verbose=0
    )
    clf.fit(texts, labels)
    assert clf.model.get_layer("predictions").units == 3
    assert clf.predict_proba(texts[:5]).shape == (5, 3)
    test_texts, test_labels = toy_texts(30, seed=5, classes=classes)
    assert accuracy(clf, test_texts, test_labels) >= 0.8


def test_sentence_encoder_classifier_learns_caches_and_round_trips(bert_folder, tmp_path):
    # A random BERT mixes every token into every output, so the cue words are most of the text.
    texts, labels = toy_texts(80, cues=3, fillers=1)
    clf = TextClassifier(str(bert_folder), epochs=60, cache_dir=tmp_path / "cache", verbose=0)
    clf.fit(texts, labels, validation_data=toy_texts(20, seed=1, cues=3, fillers=1))
    assert clf.metadata["max_length"] == 16  # sized to the data (~9 tokens), not to 256
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2  # train and validation vectors
    test_texts, test_labels = toy_texts(30, seed=2, cues=3, fillers=1)
    assert accuracy(clf, test_texts, test_labels) >= 0.85
    frozen = clf.predict_proba(test_texts)  # from cached vectors and the head
    path = clf.save(tmp_path / "m.keras")
    loaded = transferkit.load(path)  # the whole model: tokenizer ids -> BERT -> pooling -> head
    np.testing.assert_allclose(loaded.predict_proba(test_texts), frozen, atol=1e-5)
    assert labels_layer(loaded.model).metadata["sentence_encoder"]["pooling"] == "mean"
    assert labels_layer(loaded.model).metadata["features"] == "layers"
    assert loaded.features == "layers"

    encoder = clf.model.get_layer("encoder_layers")  # the transformer, shared with its backbone
    before = encoder.get_weights()[0].copy()
    clf.fine_tune(texts, labels, epochs=1)
    assert not np.allclose(before, encoder.get_weights()[0])
    assert clf.metadata["fine_tuned"] is True
    assert accuracy(clf, test_texts, test_labels) >= 0.85


def test_sentence_vector_features_still_train_and_round_trip(bert_folder, tmp_path):
    texts, labels = toy_texts(80, cues=3, fillers=1)
    clf = TextClassifier(
        str(bert_folder), features="sentence", epochs=60, cache_dir=tmp_path, verbose=0
    )
    clf.fit(texts, labels, validation_data=toy_texts(20, seed=1, cues=3, fillers=1))
    assert clf.embed(texts[:3]).shape == (3, 32)  # the encoder's own 32-d sentence vector
    assert clf.model.get_layer("head").input.shape == (None, 32)
    test_texts, test_labels = toy_texts(30, seed=2, cues=3, fillers=1)
    assert accuracy(clf, test_texts, test_labels) >= 0.8
    loaded = transferkit.load(clf.save(tmp_path / "s.keras"))
    assert loaded.features == "sentence"
    np.testing.assert_allclose(
        loaded.predict_proba(test_texts), clf.predict_proba(test_texts), atol=1e-5
    )


def test_features_errors_say_what_to_do(bert_folder, vectors_file):
    texts, labels = toy_texts(20, cues=3, fillers=1)
    with pytest.raises(InputError, match=r"Received: features='cls'"):
        TextClassifier(str(bert_folder), features="cls", verbose=0).fit(texts, labels)
    with pytest.raises(InputError, match=r"uses word vectors and a BiLSTM. Leave `features` unset"):
        TextClassifier(
            "glove-bilstm", word_vectors=vectors_file, features="layers", verbose=0
        ).fit(texts, labels)


def test_evaluate_on_a_table_and_write_a_report(word_classifier, tmp_path):
    texts, labels = toy_texts(20, seed=4)
    table = tmp_path / "eval.csv"
    table.write_text(
        "text,label\n" + "\n".join(f"{t},{y}" for t, y in zip(texts, labels)) + "\n,negative\n"
    )
    metrics = word_classifier.evaluate(table, report_dir=tmp_path / "report")
    assert metrics["n"] == 20 and metrics["dropped_rows"] == 1
    assert metrics["classes"] == ["negative", "positive"]
    assert 0.0 <= metrics["accuracy"] <= 1.0
    for name in ("metrics.json", "summary.txt", "confusion_matrix.png", "mistakes.txt"):
        assert (tmp_path / "report" / name).is_file()
    same = word_classifier.evaluate((texts, labels))
    assert same["accuracy"] == metrics["accuracy"]
    with pytest.raises(
        DataError, match=r"Labels not among the classes \['negative', 'positive'\]: \['meh'\]"
    ):
        word_classifier.evaluate((["fine"], ["meh"]))


def test_errors_say_what_to_do(vectors_file):
    clf = TextClassifier("glove-bilstm", word_vectors=vectors_file, verbose=0)
    with pytest.raises(InputError, match=r"not trained yet\. Call `fit\(texts, labels\)` first"):
        clf.predict(["text"])
    with pytest.raises(InputError, match=r"same length\. Received: 2 texts and 1 labels"):
        clf.fit(["a", "b"], ["x"])
    with pytest.raises(DataError, match=r"only one class \('x'\); a classifier needs at least two"):
        clf.fit(["a", "b"], ["x", "x"])
    with pytest.raises(InputError, match=r"`validation_data` must be a pair `\(texts, labels\)`"):
        clf.fit(["a", "b"], ["x", "y"], validation_data=["c"])
    with pytest.raises(InputError, match=r"no such model file"):
        pipeline("does/not/exist.keras")


# -- the command line -----------------------------------------------------------------------------


def write_table(path, n=60, seed=0, bad_rows=True):
    texts, labels = toy_texts(n, seed)
    lines = ["id,review,sentiment"] + [
        f"{i},{t},{y}" for i, (t, y) in enumerate(zip(texts, labels))
    ]
    if bad_rows:
        lines += [f"{n},,positive", f"{n + 1},no label here,"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_train_text_cli_end_to_end(tmp_path, vectors_file, capsys):
    data = write_table(tmp_path / "reviews.csv")
    run_dir = tmp_path / "run"
    code = main(
        [
            "train",
            "text",
            str(data),
            "--word-vectors",
            str(vectors_file),
            "--epochs",
            "3",
            "--fine-tune-epochs",
            "1",
            "--output",
            str(run_dir),
            "--json",
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in (
        "classes",
        "validation_accuracy",
        "test_accuracy",
        "head_test_accuracy",
        "fine_tune_test_accuracy",
        "model_path",
        "report_dir",
        "seconds",
        "dropped_rows",
        "vocabulary_coverage",
        "token_coverage",
    ):
        assert key in result, key
    assert result["classes"] == ["negative", "positive"]
    assert result["dropped_rows"] == 2
    assert result["test_accuracy"] == result["fine_tune_test_accuracy"]
    assert result["vocabulary_coverage"] == 1.0
    assert result["splits"] == {"train": 42, "validation": 6, "test": 12}
    report = run_dir / "report"
    for name in (
        "curves.png",
        "confusion_matrix.png",
        "metrics.json",
        "summary.txt",
        "mistakes.txt",
        "coverage.json",
        "data.json",
    ):
        assert (report / name).is_file(), name
    data_report = json.loads((report / "data.json").read_text())
    assert data_report["dropped"]["empty_text"]["first_lines"] == [62]
    assert data_report["dropped"]["missing_label"]["first_lines"] == [63]
    metrics = json.loads((report / "metrics.json").read_text())
    assert set(metrics["per_class"]) == {"negative", "positive"}
    assert "vocabulary coverage" in (report / "summary.txt").read_text()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["task"] == "text" and config["fine_tune_epochs"] == 1

    # The generic commands use the saved model.
    assert (
        main(["predict", str(run_dir / "model.keras"), "a great fun film", "dull boring", "--json"])
        == 0
    )
    predictions = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [p["label"] for p in predictions] == ["positive", "negative"]
    assert main(["evaluate", str(run_dir), str(data), "--json"]) == 0
    evaluation = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert evaluation["n"] == 60 and evaluation["classes"] == ["negative", "positive"]

    # Resuming a finished run trains nothing again and gives the same numbers.
    rows = (run_dir / "history.csv").read_text()
    assert main(["train", "text", "--resume", str(run_dir), "--json"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (run_dir / "history.csv").read_text() == rows
    assert again["test_accuracy"] == result["test_accuracy"]
    # A used folder is not overwritten by accident.
    with pytest.raises(InputError, match=r"already holds a run\. Pass --resume"):
        main(["--debug", "train", "text", str(data), "--output", str(run_dir)])


def test_cli_errors_are_one_line(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("body,stars\nnice,5\nbad,1\n")
    process = subprocess.run(
        [sys.executable, "-m", "transferkit.cli", "train", "text", str(data)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,  # where a default run folder would go
    )
    assert process.returncode == 1
    assert not (tmp_path / "runs").exists()  # bad data leaves no run folder behind
    assert process.stderr.strip().splitlines()[-1] == (
        f"transferkit: error: {data}: no texts column found (looked for text, sentence, review). "
        "Choose one with --text-column NAME. Columns: 'body', 'stars'."
    )


def test_cli_rare_classes_and_resume_errors(tmp_path, capsys):
    data = tmp_path / "d.csv"
    data.write_text("text,label\n" + "".join(f"t{i},a\n" for i in range(10)) + "u,b\nv,b\n")
    assert main(["train", "text", str(data), "--output", str(tmp_path / "r1")]) == 1
    err = capsys.readouterr().err
    assert "column 'label': Classes too rare to split: 'b' (2 examples)" in err
    assert not (tmp_path / "r1").exists()
    assert main(["train", "text", "--resume", str(tmp_path / "nothing")]) == 1
    assert "nothing: no such run folder. Pass a folder written by" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["train", "text", "--resume", str(tmp_path / "empty")]) == 1
    assert "is not a transferkit run folder: it has no config.json" in capsys.readouterr().err
    assert main(["train", "text"]) == 1
    assert "Pass the DATA table to train on, or --resume RUN_DIR" in capsys.readouterr().err
    # --features belongs to sentence encoders; refused before any run folder is made.
    ok = tmp_path / "ok.csv"
    ok.write_text("text,label\n" + "".join(f"t{i},{'ab'[i % 2]}\n" for i in range(20)))
    args = ["train", "text", str(ok), "--output", str(tmp_path / "r2"), "--features", "layers"]
    assert main(args) == 1
    assert "uses word vectors and a BiLSTM. Drop --features" in capsys.readouterr().err
    assert not (tmp_path / "r2").exists()
    with pytest.raises(SystemExit):  # argparse: "invalid choice: 'cls'"
        main(["train", "text", str(ok), "--encoder", "minilm", "--features", "cls"])
    assert "argument --features: invalid choice: 'cls'" in capsys.readouterr().err
