"""TextClassifier and `pipeline`, on tiny data and tiny encoders.

The word-vector model trains on a small GloVe-format file (positive and negative words point in
opposite directions); the transformer model uses a tiny random BERT folder. Both learn a toy
sentiment task in a few epochs, so the tests check real learning, the self-contained saved model
(strings in), loading and fine-tuning, in seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import transferkit
from helpers import toy_texts
from transferkit.errors import DataError, InputError
from transferkit.layers import ClassLabels, TextInputs
from transferkit.tasks.base import labels_layer
from transferkit.tasks.text_classifier import TextClassifier, pipeline


@pytest.fixture(scope="module")
def word_classifier(vectors_file):
    texts, labels = toy_texts(96)
    clf = TextClassifier("glove-bilstm", word_vectors=vectors_file)
    returned = clf.fit(texts, labels, validation_data=toy_texts(32, seed=1), epochs=6,
                       learning_rate=3e-3, verbose=0)
    assert returned is clf  # the scikit-learn contract
    return clf


@pytest.fixture(scope="module")
def sentence_classifier(bert_folder, tmp_path_factory):
    # A random BERT mixes every token into every output, so the cue words are most of the text.
    texts, labels = toy_texts(80, cues=3, fillers=1)
    clf = TextClassifier(str(bert_folder), cache_dir=tmp_path_factory.mktemp("cache"))
    return clf.fit(texts, labels, validation_data=toy_texts(20, seed=1, cues=3, fillers=1),
                   epochs=60, verbose=0)


def accuracy(clf, texts, labels):
    return np.mean([p["label"] == y for p, y in zip(clf.predict(texts), labels)])


def test_word_vector_classifier_learns(word_classifier):
    texts, labels = toy_texts(40, seed=2)
    assert word_classifier.class_names == ["negative", "positive"]
    assert accuracy(word_classifier, texts, labels) >= 0.9
    coverage = word_classifier.metadata["encoder"]["coverage"]
    assert coverage["vocabulary_coverage"] == 1.0 and coverage["token_coverage"] == 1.0


def test_word_model_shape_follows_the_recipe(word_classifier):
    network = word_classifier.network
    embedding = network.get_layer("word_embedding")
    assert embedding.output_dim == 8  # the vectors' width, not max_length
    assert not embedding.trainable  # frozen in the head phase
    assert network.get_layer("bilstm_1").forward_layer.units == 150
    assert network.get_layer("dense").units == 6
    assert network.get_layer("logits").units == 1  # one logit for two classes
    model = word_classifier.model
    assert isinstance(model.get_layer("tokenize"), TextInputs)  # strings in
    assert isinstance(model.layers[-1], ClassLabels) and model.layers[-1].task == "text"


def test_predict_shapes_like_a_hugging_face_pipeline(word_classifier):
    results = word_classifier.predict(["A great, fun film!", "dull and boring"])
    assert [r["label"] for r in results] == ["positive", "negative"]
    for result in results:
        assert set(result) == {"label", "score", "probabilities"}
        assert result["score"] == max(result["probabilities"].values()) > 0.5
    single = word_classifier.predict("superb")
    assert len(single) == 1 and single[0]["label"] == "positive"
    assert word_classifier.predict([]) == []
    probabilities = word_classifier.predict_proba(["good", "bad", ""])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)


@pytest.mark.slow  # ~18 s: trains, then a fresh Python process
def test_saved_text_models_take_strings_in_a_fresh_process(
    word_classifier, sentence_classifier, tmp_path
):
    """The issue's promise: after `import transferkit`, plain `keras.saving.load_model(...,
    safe_mode=True)` maps raw strings to the scores `predict_proba` gives, for both encoders."""
    texts, _ = toy_texts(12, seed=3, cues=3, fillers=1)
    texts += ["", "!!!", "an unknownword and zzz", "great " * 300]  # empty, no words, OOV, long
    expected = {}
    for name, clf in (("word", word_classifier), ("sentence", sentence_classifier)):
        clf.save(tmp_path / f"{name}.keras")
        expected[name] = clf.predict_proba(texts)
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    code = textwrap.dedent(
        f"""
        import json, sys
        import numpy as np
        import transferkit  # registers transferkit's layers once Keras loads
        import keras
        texts = np.asarray(json.load(open({str(tmp_path / "texts.json")!r})), dtype=object)
        out = {{}}
        for name in ("word", "sentence"):
            model = keras.saving.load_model({str(tmp_path)!r} + f"/{{name}}.keras", safe_mode=True)
            out[name] = model.predict(texts, verbose=0).tolist()
        print(json.dumps(out))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    scores = json.loads(result.stdout.strip().splitlines()[-1])
    for name in ("word", "sentence"):
        assert np.abs(np.asarray(scores[name]) - expected[name]).max() <= 1e-5, name


def test_load_gives_the_same_predictions_and_a_pipeline(word_classifier, tmp_path):
    texts, _ = toy_texts(10, seed=3)
    path = word_classifier.save(tmp_path / "model.keras")
    loaded = transferkit.load(path)
    assert isinstance(loaded, TextClassifier) and loaded.class_names == ["negative", "positive"]
    np.testing.assert_allclose(
        loaded.predict_proba(texts), word_classifier.predict_proba(texts), atol=1e-6
    )
    metadata = labels_layer(keras.saving.load_model(path, safe_mode=True)).metadata
    assert metadata["encoder"]["kind"] == "glove-bilstm" and metadata["config"]["seed"] == 0
    classify = pipeline(path)
    assert classify(texts) == loaded.predict(texts)
    assert classify("lovely")[0]["label"] == "positive"


@pytest.mark.slow  # ~14 s: the default suite's 10-minute budget
def test_fine_tuning_unfreezes_the_embedding(vectors_file):
    texts, labels = toy_texts(64)
    clf = TextClassifier("glove-bilstm", word_vectors=vectors_file)
    clf.fit(texts, labels, epochs=2, learning_rate=3e-3, verbose=0)
    before = clf.network.get_layer("word_embedding").get_weights()[0].copy()
    assert clf.fine_tune(epochs=1, verbose=0) is clf  # the data `fit` used
    after = clf.network.get_layer("word_embedding").get_weights()[0]
    assert clf.network.get_layer("word_embedding").trainable
    assert not np.allclose(before, after)
    assert clf.metadata["fine_tuned"] is True
    assert [row["phase"] for row in clf.history] == ["head", "head", "fine_tune"]
    with pytest.raises(InputError, match=r"`fine_tune\(\)` needs `epochs` >= 1: the default, "
                                         r"TextTrainConfig\.fine_tune_epochs, is 0"):
        clf.fine_tune(verbose=0)


@pytest.mark.slow  # ~8 s; two classes are tested by the default suite
def test_three_classes_use_softmax(vectors_file):
    classes = ("negative", "neutral", "positive")
    texts, labels = toy_texts(90, classes=classes)
    clf = TextClassifier("glove-bilstm", word_vectors=vectors_file)
    clf.fit(texts, labels, epochs=8, learning_rate=3e-3, verbose=0)
    assert clf.network.get_layer("logits").units == 3
    assert clf.predict_proba(texts[:5]).shape == (5, 3)
    test_texts, test_labels = toy_texts(30, seed=5, classes=classes)
    assert accuracy(clf, test_texts, test_labels) >= 0.8


def test_sentence_encoder_classifier_learns_caches_and_fine_tunes(sentence_classifier, tmp_path):
    clf = sentence_classifier
    assert clf.metadata["encoder"]["sequence_length"] == 16  # sized to the data, not to 256
    assert len(list(clf.cache_dir.glob("*.npy"))) == 2  # train and validation features
    test_texts, test_labels = toy_texts(30, seed=2, cues=3, fillers=1)
    assert accuracy(clf, test_texts, test_labels) >= 0.85
    np.testing.assert_allclose(  # the head on cached features gives the whole network's scores
        clf.predict_proba_cached(test_texts), clf.predict_proba(test_texts), atol=1e-5
    )
    loaded = transferkit.load(clf.save(tmp_path / "m.keras"))
    assert labels_layer(loaded.model).metadata["encoder"]["sentence_encoder"]["pooling"] == "mean"
    assert loaded.get_encoder().options["features"] == "layers"
    encoder = loaded.network.get_layer("encoder_layers")  # the transformer, shared with its backbone
    before = encoder.get_weights()[0].copy()
    texts, labels = toy_texts(80, cues=3, fillers=1)
    loaded.fine_tune(texts, labels, epochs=1, verbose=0)  # a loaded model fine-tunes too
    assert not np.allclose(before, encoder.get_weights()[0])
    assert accuracy(loaded, test_texts, test_labels) >= 0.85


@pytest.mark.slow  # ~12 s: the default suite's 10-minute budget
def test_sentence_vector_features_still_train(bert_folder, tmp_path):
    texts, labels = toy_texts(80, cues=3, fillers=1)
    clf = TextClassifier(str(bert_folder), features="sentence", cache_dir=tmp_path)
    clf.fit(texts, labels, validation_data=toy_texts(20, seed=1, cues=3, fillers=1), epochs=60,
            verbose=0)
    assert clf.embed(texts[:3]).shape == (3, 32)  # the encoder's own 32-d sentence vector
    assert clf.network.get_layer("head").input.shape == (None, 32)
    test_texts, test_labels = toy_texts(30, seed=2, cues=3, fillers=1)
    assert accuracy(clf, test_texts, test_labels) >= 0.8


def test_options_of_another_encoder_kind_are_refused(bert_folder, vectors_file):
    texts, labels = toy_texts(20, cues=3, fillers=1)
    with pytest.raises(InputError, match=r"Received: features='cls'"):
        TextClassifier(str(bert_folder), features="cls").fit(texts, labels, verbose=0)
    with pytest.raises(InputError, match=r"`features` is an option of sentence encoders, not of "
                                         r"'glove-bilstm' \(glove-bilstm\)\. Leave `features` "
                                         r"unset, or pick an encoder it applies to, such as "
                                         r"'minilm'\."):
        TextClassifier("glove-bilstm", word_vectors=vectors_file, features="layers").fit(
            texts, labels, verbose=0
        )
    with pytest.raises(InputError, match=r"`word_vectors` is an option of glove-bilstm"):
        TextClassifier(str(bert_folder), word_vectors=vectors_file).check_settings()


def test_evaluate_on_a_table_and_write_a_report(word_classifier, tmp_path):
    texts, labels = toy_texts(20, seed=4)
    table = tmp_path / "eval.csv"
    table.write_text(
        "text,label\n" + "\n".join(f"{t},{y}" for t, y in zip(texts, labels)) + "\n,negative\n"
    )
    metrics = word_classifier.evaluate(table, report_dir=tmp_path / "report")
    assert metrics["n"] == 20 and metrics["num_skipped"] == 1
    assert metrics["skipped"] == [{"line": 22, "reason": "empty or missing text"}]
    assert metrics["classes"] == ["negative", "positive"]
    right = sum(p["label"] == y for p, y in zip(word_classifier.predict(texts), labels))
    assert metrics["accuracy"] == right / 20
    for name in ("metrics.json", "summary.txt", "confusion_matrix.png", "mistakes.txt"):
        assert (tmp_path / "report" / name).is_file()
    assert word_classifier.evaluate(texts, labels)["accuracy"] == metrics["accuracy"]
    with pytest.raises(
        DataError, match=r"Labels not among the classes \['negative', 'positive'\]: \['meh'\]"
    ):
        word_classifier.evaluate(["fine"], ["meh"])


def test_errors_say_what_to_do(vectors_file):
    clf = TextClassifier("glove-bilstm", word_vectors=vectors_file)
    with pytest.raises(InputError, match=r"no trained model yet\. Call `fit\(\.\.\.\)` first"):
        clf.predict(["text"])
    with pytest.raises(InputError, match=r"same length\. Received: 2 texts and 1 labels"):
        clf.fit(["a", "b"], ["x"])
    with pytest.raises(DataError, match=r"only one class \('x'\); a classifier needs at least two"):
        clf.fit(["a", "b"], ["x", "x"])
    with pytest.raises(InputError, match=r"`validation_data` must be a pair `\(texts, labels\)`"):
        clf.fit(["a", "b"], ["x", "y"], validation_data=["c"])
    with pytest.raises(InputError, match=r"no such model file"):
        pipeline("does/not/exist.keras")


@pytest.mark.slow  # two runs (~20 s): the default suite's 10-minute budget
def test_dropout_and_weight_decay_reach_the_head(bert_folder, tmp_path):
    """`dropout` (a sentence encoder's option) is the head's dropout rate, and `fit`'s
    `weight_decay` is Adam's decoupled decay for the head phase: the same run with a strong
    decay ends with a smaller head."""
    texts, labels = toy_texts(40, cues=3, fillers=1)
    norms = {}
    for decay in (0.0, 3.0):
        clf = TextClassifier(str(bert_folder), dropout=0.1, cache_dir=tmp_path)
        clf.fit(texts, labels, validation_data=toy_texts(12, seed=1, cues=3, fillers=1),
                epochs=8, learning_rate=0.01, weight_decay=decay, verbose=0)
        head = clf.network.get_layer("head")
        assert head.get_layer("head_dropout").rate == 0.1
        assert clf.get_config()["dropout"] == 0.1
        assert head.optimizer.weight_decay == (decay or None)  # the head phase compiles it
        norms[decay] = float(np.linalg.norm(head.get_layer("head_logits").get_weights()[0]))
    assert norms[3.0] < 0.9 * norms[0.0], norms
    with pytest.raises(InputError, match="weight_decay"):
        TextClassifier(str(bert_folder), cache_dir=tmp_path).fit(texts, labels, verbose=0,
                                                                 weight_decay=-1)
