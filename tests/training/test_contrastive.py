"""Contrastive tuning (`strategy="contrastive"`, SetFit's first step): the pair sampler, the
pair model's loss on a tiny random BERT, and a text classifier trained that way.

The toy reviews (`helpers.toy_texts`) carry their label in a few cue words among fillers; a
random BERT mixes every token into every output, so before tuning two reviews of the same label
are hardly closer than two of different labels. Tuning on pairs must open that gap.
"""

from __future__ import annotations

import numpy as np
import pytest

import transferkit
from helpers import toy_texts
from transferkit.errors import DataError, InputError
from transferkit.tasks.text_classifier import TextClassifier
from transferkit.testing import toy_tagged_texts
from transferkit.training.contrastive import default_pair_count, sample_pairs

TOY = {"cues": 3, "fillers": 1}


def test_pairs_are_half_positive_and_follow_the_labels():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    first, second, similarity = sample_pairs(labels, 400, seed=0)
    assert len(first) == 400 and similarity.dtype == np.float32
    assert similarity.sum() == 200  # one positive and one negative pair per anchor
    same = labels[first] == labels[second]
    np.testing.assert_array_equal(same, similarity == 1.0)
    assert (first[similarity == 1.0] != second[similarity == 1.0]).all()  # never itself here
    anchors = np.bincount(first, minlength=len(labels))
    assert anchors.max() - anchors.min() <= 2  # every text anchors about as often
    again = sample_pairs(labels, 400, seed=0)
    other = sample_pairs(labels, 400, seed=1)
    np.testing.assert_array_equal(first, again[0])
    assert not np.array_equal(second, other[1])


def test_a_class_of_one_text_pairs_with_itself():
    first, second, similarity = sample_pairs(np.array([0, 1, 1, 1]), 40, seed=0)
    positives = similarity == 1.0
    alone = positives & (first == 0)
    assert alone.any() and (second[alone] == 0).all()


def test_multi_label_pairs_share_a_label_or_none():
    matrix = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [0, 1, 1], [1, 0, 1]])
    first, second, similarity = sample_pairs(matrix, 300, seed=3)
    shares = (matrix[first] & matrix[second]).any(axis=1)
    np.testing.assert_array_equal(shares, similarity == 1.0)
    assert 0.4 < similarity.mean() < 0.6


@pytest.mark.parametrize("labels", [np.zeros(5, int), np.array([[1, 1], [1, 1], [1, 0]]),
                                    np.array([0])])
def test_pairs_need_two_labels_apart(labels):
    with pytest.raises(DataError, match="needs texts with different labels"):
        sample_pairs(labels, 10, seed=0)


def test_the_default_pair_count_is_setfits_capped():
    assert default_pair_count(16) == 640  # 8 a class, 2 classes: 20 iterations x 2 pairs x 16
    assert default_pair_count(10_000) == 4000


def _similarity_gap(clf, texts, labels) -> float:
    """Mean cosine similarity of same-label pairs minus that of different-label pairs, under
    the classifier's encoder's sentence vectors."""
    vectors = clf.embed(texts)
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cosine = vectors @ vectors.T
    labels = np.asarray(labels)
    same = labels[:, None] == labels[None, :]
    off = ~np.eye(len(labels), dtype=bool)
    return float(cosine[same & off].mean() - cosine[~same].mean())


@pytest.fixture(scope="module")
def contrastive(bert_folder, tmp_path_factory):
    """A frozen-head and a contrastive classifier on the same 16 toy reviews, with a cache."""
    cache = tmp_path_factory.mktemp("cache")
    texts, labels = toy_texts(16, **TOY)
    validation = toy_texts(8, seed=1, **TOY)
    head = TextClassifier(str(bert_folder), features="sentence", cache_dir=cache)
    head.fit(texts, labels, validation_data=validation, epochs=30, verbose=0)
    tuned = TextClassifier(str(bert_folder), strategy="contrastive", cache_dir=cache,
                           contrastive_learning_rate=1e-3, contrastive_epochs=2)
    tuned.fit(texts, labels, validation_data=validation, epochs=30, verbose=0)
    return head, tuned, cache


def test_tuning_on_pairs_pulls_same_label_texts_together(contrastive):
    head, tuned, _ = contrastive
    texts, labels = toy_texts(40, seed=2, **TOY)  # texts neither saw
    before, after = _similarity_gap(head, texts, labels), _similarity_gap(tuned, texts, labels)
    assert after > before + 0.2, (before, after)


def test_a_contrastive_classifier_records_its_phase_and_keeps_its_tuned_encoder(
        contrastive, tmp_path):
    head, tuned, cache = contrastive
    phases = [row["phase"] for row in tuned.history]
    assert phases[:2] == ["contrastive", "contrastive"] and phases.count("head") == 30
    assert {"loss", "val_loss"} <= set(tuned.history[0])
    encoder = tuned.metadata["encoder"]
    assert encoder["features"] == "sentence"  # what the pairs tuned, unless told otherwise
    assert encoder["contrastive"]["pairs"] == 640 and encoder["contrastive"]["epochs"] == 2
    fingerprints = {clf.get_encoder().sentence_encoder().fingerprint for clf in (head, tuned)}
    assert len(fingerprints) == 2  # the tuned encoder's features are cached apart
    texts = toy_texts(16, **TOY)[0]  # both fitted on these: each reads its own cache entry
    assert not np.allclose(head.embed(texts), tuned.embed(texts), atol=1e-3)
    test_texts, test_labels = toy_texts(30, seed=2, **TOY)
    predictions = tuned.predict(test_texts)
    assert np.mean([p["label"] == y for p, y in zip(predictions, test_labels)]) >= 0.85
    loaded = transferkit.load(tuned.save(tmp_path / "tuned.keras"))
    np.testing.assert_allclose(loaded.predict_proba(test_texts), tuned.predict_proba(test_texts),
                               atol=1e-5)  # the saved model holds the tuned encoder


@pytest.mark.slow  # ~10 s: the default suite's 10-minute budget
def test_contrastive_tuning_takes_multi_label_targets(bert_folder, tmp_path):
    texts, labels, _ = toy_tagged_texts(28)
    clf = TextClassifier(str(bert_folder), strategy="contrastive", target="multi-label",
                         contrastive_pairs=64, cache_dir=tmp_path)
    clf.fit(texts, [label.split(";") for label in labels], validation_size=0.25, epochs=5,
            verbose=0)
    assert [row["phase"] for row in clf.history][0] == "contrastive"
    assert clf.metadata["encoder"]["contrastive"]["pairs"] == 64
    assert clf.predict_proba(texts[:3]).shape == (3, 2)


def test_contrastive_settings_that_cannot_work_are_refused(bert_folder, vectors_file):
    texts, labels = toy_texts(12, **TOY)
    with pytest.raises(InputError, match="tunes a sentence encoder.*'glove-bilstm'"):
        TextClassifier("glove-bilstm", word_vectors=vectors_file,
                       strategy="contrastive").fit(texts, labels, verbose=0)
    with pytest.raises(InputError, match="regression target has no labels"):
        TextClassifier(str(bert_folder), strategy="contrastive",
                       target="regression").fit(texts, list(range(12)), verbose=0)
    with pytest.raises(InputError, match="`strategy` must be one of 'head', 'contrastive'"):
        TextClassifier(str(bert_folder), strategy="setfit")
    with pytest.raises(InputError, match="contrastive_pairs"):
        TextClassifier(str(bert_folder), strategy="contrastive", contrastive_pairs=1)


@pytest.mark.slow  # ~10 s
def test_a_rerun_on_the_run_folder_restores_the_tuned_encoder(bert_folder, tmp_path):
    """The phases finished in the run folder are loaded, not trained again: the contrastive
    phase's weights must be back in the encoder before the head's features are computed."""
    texts, labels = toy_texts(16, **TOY)
    validation = toy_texts(8, seed=1, **TOY)

    def fit(cache, learning_rate):
        clf = TextClassifier(str(bert_folder), strategy="contrastive", cache_dir=tmp_path / cache,
                             contrastive_learning_rate=learning_rate, contrastive_pairs=64)
        return clf.fit(texts, labels, validation_data=validation, epochs=5, verbose=0,
                       output=tmp_path / "run")

    # Caches apart: `again` computes its features anew. Its learning rate would tune the
    # encoder otherwise if the finished phase were trained again instead of loaded.
    first, again = fit("a", 1e-3), fit("b", 1e-2)
    assert again.get_encoder().sentence_encoder().fingerprint == \
        first.get_encoder().sentence_encoder().fingerprint
    test_texts = toy_texts(10, seed=2, **TOY)[0]
    np.testing.assert_allclose(again.predict_proba(test_texts), first.predict_proba(test_texts),
                               atol=1e-6)


def test_a_head_only_run_with_few_texts_a_class_hears_of_contrastive_tuning(bert_folder):
    from transferkit.pipelines.text import few_shot_hint

    few = np.repeat([0, 1], [8, 30])
    hint = few_shot_hint(TextClassifier(str(bert_folder)), few)
    assert "8 training texts in the smallest class. --strategy contrastive" in hint
    assert few_shot_hint(TextClassifier(str(bert_folder)), np.repeat([0, 1], 20)) == ""
    assert few_shot_hint(TextClassifier("glove-bilstm"), few) == ""  # nothing to tune on pairs
    assert few_shot_hint(TextClassifier(str(bert_folder), target="regression"), few) == ""
