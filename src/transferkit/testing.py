"""Tiny models and data for tests: fast stand-ins for the real pretrained assets.

Tests of what transferkit does *around* a backbone (training runs, saving and loading, exports,
serving, batch jobs, tracking, resuming) need *a* backbone, not a good one. The real default,
EfficientNet-Lite0, takes seconds to build, convert and run on a CPU; the stand-ins here take
milliseconds, so a test suite (transferkit's own, or a user's) can go through every step quickly.

- `test_cnn` (`TINY_BACKBONE`): an image backbone in the real registry, like timm's `test_*`
  models, so that every entry point takes it by name, a fresh process and the command line
  included (`transferkit train images DATA --backbone test_cnn`). Three small convolutions, random
  weights drawn from a fixed seed whatever `weights` asks for: the same model in every process.
  Its features tell simple images apart (a linear head learns faces from non-faces), but it is
  *not pretrained*: for tests only. It says so in `transferkit backbones`, and since it has no
  ImageNet weights it is not "available offline" (so `transferkit rank` does not pick it).
- `tiny_bert_folder`: a random BERT in Hugging Face sentence-transformers layout, a stand-in for
  MiniLM (`--encoder FOLDER`); `tiny_mpnet_folder`, the same for all-mpnet-base-v2's architecture.
- `write_vectors_file`: toy GloVe-format word vectors, a stand-in for GloVe
  (`--word-vectors FILE`), and `write_table` / `toy_texts`: reviews whose words they tell apart.
- `write_faces`: real 25x25 faces and non-faces (scikit-image's `lfw_subset`) as class folders.

Example:
    >>> from transferkit.testing import TINY_BACKBONE, write_faces
    >>> data = write_faces(tmp_path / "faces", per_class=12)
    >>> transferkit.train_images(data, backbone=TINY_BACKBONE, image_size=32, epochs=2)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from transferkit.backbones.preprocessing import PRESETS
from transferkit.backbones.registry import register
from transferkit.backbones.spec import BackboneSpec

__all__ = [
    "TINY_BACKBONE",
    "TINY_FEATURE_DIM",
    "SENTENCES",
    "VOCABULARY",
    "tiny_bert_folder",
    "tiny_mpnet_folder",
    "tiny_cnn",
    "toy_texts",
    "toy_tagged_texts",
    "write_faces",
    "write_image_targets",
    "write_table",
    "write_vectors_file",
]

# -- a tiny image backbone ------------------------------------------------------------------------

TINY_BACKBONE = "test_cnn"
TINY_FEATURE_DIM = 16
TINY_SEED = 0  # of the random weights and the toy data
# (filters, strides) of the three convolutions; a BatchNormalization after the first, so that
# fine-tuning meets one as in every real backbone.
_CONVOLUTIONS = ((8, 2), (16, 2), (TINY_FEATURE_DIM, 1))
_NUM_CLASSES = 1000


def _seeded_weights(model, seed: int) -> None:
    """He-normal kernels and small biases from a numpy generator: the same weights in every
    process, whatever the Keras seed (and without touching Keras's global random state)."""
    rng = np.random.default_rng(seed)
    values = []
    for variable in model.weights:
        shape = tuple(variable.shape)
        name = variable.path.rsplit("/", 1)[-1]
        if name == "kernel":
            fan_in = int(np.prod(shape[:-1]))
            values.append(rng.normal(0.0, np.sqrt(2.0 / fan_in), shape))
        elif name == "bias":
            values.append(rng.normal(0.0, 0.05, shape))
        elif name in ("gamma", "moving_variance"):
            values.append(np.ones(shape))
        else:  # beta, moving_mean
            values.append(np.zeros(shape))
    model.set_weights([v.astype("float32") for v in values])


def tiny_cnn(include_top=False, weights=None, input_shape=None, classifier_activation="softmax"):
    """The `test_cnn` architecture with its seeded random weights (a `BackboneSpec.builder`).

    Args:
        include_top: add a pooled 1000-class classifier (random too). Default `False`: the last
            feature map, `(height / 4, width / 4, 16)`.
        weights: ignored (`None`, `"imagenet"`): the weights are always the seeded random ones.
            `get_backbone` loads a `.weights.h5` path itself after building.
        input_shape: `(height, width, 3)`; default `(32, 32, 3)`.
        classifier_activation: activation of the top. Default `"softmax"`.

    Returns:
        A `keras.Model` named `test_cnn` that takes preprocessed pixels (in [-1, 1]).
    """
    import keras
    from keras import layers

    del weights  # always the seeded weights: see the docstring
    inputs = keras.Input(shape=tuple(input_shape or (32, 32, 3)), name="input")
    x = inputs
    for i, (filters, strides) in enumerate(_CONVOLUTIONS, start=1):
        x = layers.Conv2D(filters, 3, strides=strides, padding="same", name=f"conv{i}")(x)
        if i == 1:
            x = layers.BatchNormalization(name="bn1")(x)
        x = layers.ReLU(name="top_activation" if i == len(_CONVOLUTIONS) else f"relu{i}")(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dense(_NUM_CLASSES, activation=classifier_activation, name="predictions")(x)
    model = keras.Model(inputs, x, name=TINY_BACKBONE)
    _seeded_weights(model, TINY_SEED)
    return model


def _no_imagenet_weights() -> bool:
    return False


register(
    BackboneSpec(
        name=TINY_BACKBONE,
        family="Test",
        builder=tiny_cnn,
        default_input_size=32,
        preprocessing=PRESETS["tf"],
        feature_dim=TINY_FEATURE_DIM,
        weights_source=f"none: random weights from seed {TINY_SEED}, the same in every process",
        license="Apache-2.0 (transferkit)",
        weights_available=_no_imagenet_weights,
        min_input_size=16,
        description="For tests only, not pretrained: 3 small convolutions, 16 features, "
        "milliseconds a batch (transferkit.testing)",
    )
)


# -- images -----------------------------------------------------------------------------------


def write_faces(folder: Path, per_class: int) -> Path:
    """`per_class` (at most 100) real faces and non-faces from scikit-image's `lfw_subset`, as
    class folders `face/` and `not_face/` of 25x25 grey PNGs under `folder`. Returns `folder`."""
    import skimage.data
    from PIL import Image

    folder = Path(folder)
    images = skimage.data.lfw_subset()  # 100 faces, then 100 non-faces; 25x25 in [0, 1]
    for label, offset in (("face", 0), ("not_face", 100)):
        (folder / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = (images[offset + i] * 255).round().astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(folder / label / f"{label}_{i:03d}.png")
    return folder


def write_image_targets(folder: Path, n: int = 40, flags: bool = False) -> Path:
    """A manifest of `n` (at most 200) real 25x25 faces and non-faces (`lfw_subset`) with two
    targets a test can learn: `labels` (`face` or `not_face`, and `bright` for the brighter
    half: one or two labels each) and `target` (the mean brightness, 0-100). Images in
    `folder/images/`, the table `folder/targets.csv` (`path,labels,target`). With `flags`, the
    labels are two 0/1 columns instead (`path,face,bright,target`): a dark non-face has none.
    Returns the table."""
    import skimage.data
    from PIL import Image

    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    images = skimage.data.lfw_subset()
    chosen = [i // 2 if i % 2 == 0 else 100 + i // 2 for i in range(n)]  # faces and not, in turn
    brightness = [float(images[i].mean() * 100) for i in chosen]
    middle = float(np.median(brightness))
    rows = ["path,face,bright,target" if flags else "path,labels,target"]
    for i, value in zip(chosen, brightness):
        name = f"images/{i:03d}.png"
        Image.fromarray((images[i] * 255).round().astype(np.uint8), mode="L").save(folder / name)
        labels = ["face" if i < 100 else "not_face"] + (["bright"] if value > middle else [])
        cells = f"{int(i < 100)},{int(value > middle)}" if flags else ";".join(labels)
        rows.append(f"{name},{cells},{value:.3f}")
    table = folder / "targets.csv"
    table.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return table


# -- toy reviews and word vectors -------------------------------------------------------------

POSITIVE = ["good", "great", "fun", "lovely", "superb"]
NEGATIVE = ["bad", "dull", "boring", "awful", "poor"]
FILLER = ["the", "movie", "film", "was", "plot", "really", "quite", "a", "story", "it"]


def toy_texts(n, seed=TINY_SEED, classes=("negative", "positive"), cues=1, fillers=5):
    """`n` toy reviews and their labels: `fillers` neutral words around `cues` words that give
    the label away (`classes` from "negative", "positive", "neutral")."""
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


def toy_tagged_texts(n, seed=TINY_SEED, fillers=4) -> tuple[list[str], list[str], list[float]]:
    """`n` toy reviews with a label set and a number: each has 0-2 positive and 0-2 negative
    cue words (at least one cue); `labels` is `positive`, `negative` or `positive;negative`
    (which cues it has), and the number is (positive - negative cues), from -2 to 2."""
    rng = np.random.default_rng(seed)
    texts, labels, values = [], [], []
    for i in range(n):
        good, bad = [(1, 0), (0, 1), (1, 1), (2, 0), (0, 2), (2, 1), (1, 2)][i % 7]
        words = ([str(w) for w in rng.choice(POSITIVE, good)] + [str(w) for w in
                 rng.choice(NEGATIVE, bad)] + [str(w) for w in rng.choice(FILLER, fillers)])
        rng.shuffle(words)
        texts.append(" ".join(words).capitalize() + ".")
        labels.append(";".join(name for name, count in (("positive", good), ("negative", bad))
                               if count))
        values.append(float(good - bad))
    return texts, labels, values


def write_vectors_file(path: Path) -> Path:
    """GloVe-format 8-d vectors of the toy reviews' words: positive words along +e0, negative
    along -e0, "okay"/"fine" along +e1, filler random. Returns `path`."""
    path = Path(path)
    rng = np.random.default_rng(0)
    lines = []
    for word in POSITIVE + NEGATIVE + FILLER + ["okay", "fine"]:
        vector = rng.normal(0, 0.3, 8)
        vector[0] += 2.0 if word in POSITIVE else -2.0 if word in NEGATIVE else 0.0
        vector[1] += 2.0 if word in ("okay", "fine") else 0.0
        lines.append(word + " " + " ".join(f"{v:.5f}" for v in vector))
    path.write_text("\n".join(lines) + "\n")
    return path


def write_table(path: Path, n: int = 60, seed: int = TINY_SEED, bad_rows: bool = True) -> Path:
    """A CSV of `n` toy reviews (`id,review,sentiment`); with `bad_rows`, two unusable rows at
    the end (an empty review, a missing label). Returns `path`."""
    path = Path(path)
    texts, labels = toy_texts(n, seed)
    lines = ["id,review,sentiment"] + [
        f"{i},{t},{y}" for i, (t, y) in enumerate(zip(texts, labels))
    ]
    if bad_rows:
        lines += [f"{n},,positive", f"{n + 1},no label here,"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# -- a tiny random BERT in Hugging Face sentence-transformers layout --------------------------

WORDS = [
    "the", "a", "movie", "film", "is", "was", "great", "good", "bad", "dull", "fun", "boring",
    "and", "but", "not", "very", "cafe", "plot", "story", "actors", "acting", "it", "this", "that",
    "of", "to", "too", "long", "short", "funny", "sad", "love", "hate", "best", "worst", "ever",
]  # fmt: skip
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VOCABULARY = SPECIAL + WORDS + [".", ",", "!", "'", "##s", "##ing", "##ly"]
SENTENCES = [
    "The movie was great!",
    "a DULL, boring film .",
    "Café plot: not very funny, but the actors are the best ever",
    "it",
    "unknownword zzz",
]


def tiny_bert_folder(
    path, *, hidden=16, layers=2, heads=2, intermediate=32, seed=TINY_SEED, pooling=None,
    layer_scale=0.5,
):
    """Writes a random BERT in Hugging Face sentence-transformers layout to `path` (made if
    missing) and returns it: pass it as `encoder=` / `--encoder`, as MiniLM's folder would be.

    Args:
        hidden, layers, heads, intermediate: the BERT's sizes. Default 16, 2, 2, 32.
        seed: the random weights' seed. Default 0.
        pooling: `None` or `"mean"` (default: mean pooling), `"cls"` or `"max"`.
        layer_scale: the spread of the attention and feed-forward weights: small values keep each
            token close to its own embedding (a random encoder whose outputs still tell words
            apart). Default 0.5.
    """
    from safetensors.numpy import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab = len(VOCABULARY)
    tensors = _random_bert_tensors(np.random.default_rng(seed), vocab, hidden, layers,
                                   intermediate, layer_scale)
    save_file(tensors, str(path / "model.safetensors"))
    config = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": vocab,
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": intermediate,
        "max_position_embeddings": 64,
        "type_vocab_size": 2,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
    }
    (path / "config.json").write_text(json.dumps(config))
    (path / "vocab.txt").write_text("\n".join(VOCABULARY) + "\n")
    (path / "tokenizer_config.json").write_text(
        json.dumps(
            {"do_lower_case": True, "strip_accents": None, "tokenizer_class": "BertTokenizer"}
        )
    )
    _sentence_transformers_files(path, hidden, pooling)
    return path


def _sentence_transformers_files(path: Path, hidden: int, pooling=None) -> None:
    """What sentence-transformers keeps beside a model: its sequence length, modules (Transformer,
    Pooling, Normalize) and pooling mode."""
    (path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 32}))
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize",
         "type": "sentence_transformers.models.Normalize"},
    ]  # fmt: skip
    (path / "modules.json").write_text(json.dumps(modules))
    (path / "1_Pooling").mkdir(exist_ok=True)
    (path / "1_Pooling" / "config.json").write_text(
        json.dumps(
            {
                "word_embedding_dimension": hidden,
                "pooling_mode_cls_token": pooling == "cls",
                "pooling_mode_mean_tokens": pooling in (None, "mean"),
                "pooling_mode_max_tokens": pooling == "max",
            }
        )
    )


def _drawer(rng):
    """`w(*shape, scale=0.2)`: float32 normal draws from `rng`, in call order."""

    def w(*shape, scale=0.2):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    return w


def _feed_forward_tensors(w, prefix: str, hidden: int, intermediate: int,
                          layer_scale: float) -> dict[str, np.ndarray]:
    """A BERT-style layer's feed-forward block (BERT's and MPNet's share its names)."""
    return {
        prefix + "intermediate.dense.weight": w(intermediate, hidden, scale=layer_scale),
        prefix + "intermediate.dense.bias": w(intermediate),
        prefix + "output.dense.weight": w(hidden, intermediate, scale=layer_scale * 0.4),
        prefix + "output.dense.bias": w(hidden),
        prefix + "output.LayerNorm.weight": 1 + w(hidden, scale=0.1),
        prefix + "output.LayerNorm.bias": w(hidden, scale=0.1),
    }


def _random_bert_tensors(rng, vocab: int, hidden: int, layers: int, intermediate: int,
                         layer_scale: float) -> dict[str, np.ndarray]:
    """A BERT's weights under Hugging Face's names, drawn from `rng` (see `tiny_bert_folder`)."""
    w = _drawer(rng)

    tensors = {
        "embeddings.word_embeddings.weight": w(vocab, hidden),
        "embeddings.position_embeddings.weight": w(64, hidden),
        "embeddings.token_type_embeddings.weight": w(2, hidden),
        "embeddings.LayerNorm.weight": 1 + w(hidden, scale=0.1),
        "embeddings.LayerNorm.bias": w(hidden, scale=0.1),
        "pooler.dense.weight": w(hidden, hidden),
        "pooler.dense.bias": w(hidden),
    }
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for name in ("query", "key", "value"):
            tensors[p + f"attention.self.{name}.weight"] = w(hidden, hidden, scale=layer_scale)
            tensors[p + f"attention.self.{name}.bias"] = w(hidden)
        tensors[p + "attention.output.dense.weight"] = w(hidden, hidden, scale=layer_scale * 0.4)
        tensors[p + "attention.output.dense.bias"] = w(hidden)
        tensors[p + "attention.output.LayerNorm.weight"] = 1 + w(hidden, scale=0.1)
        tensors[p + "attention.output.LayerNorm.bias"] = w(hidden, scale=0.1)
        tensors.update(_feed_forward_tensors(w, p, hidden, intermediate, layer_scale))
    return tensors


MPNET_VOCABULARY = (["<s>", "<pad>", "</s>", "<unk>", "[UNK]"] + WORDS
                    + [".", ",", "!", "'", "##s", "##ing", "##ly", "<mask>"])


def tiny_mpnet_folder(path, *, hidden=16, layers=2, heads=2, intermediate=32, seed=TINY_SEED,
                      layer_scale=0.5):
    """Writes a random MPNet (all-mpnet-base-v2's architecture) in Hugging Face
    sentence-transformers layout to `path` and returns it, as `tiny_bert_folder` does for BERT:
    its vocabulary has MPNet's special tokens (`<s>` 0, `<pad>` 1, `</s>` 2), its position table
    the two leading rows RoBERTa skips, and a relative position bias of 32 buckets."""
    from safetensors.numpy import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab = len(MPNET_VOCABULARY)
    w = _drawer(np.random.default_rng(seed))

    tensors = {
        "embeddings.word_embeddings.weight": w(vocab, hidden),
        "embeddings.position_embeddings.weight": w(66, hidden),
        "embeddings.LayerNorm.weight": 1 + w(hidden, scale=0.1),
        "embeddings.LayerNorm.bias": w(hidden, scale=0.1),
        "encoder.relative_attention_bias.weight": w(32, heads, scale=0.5),
        "pooler.dense.weight": w(hidden, hidden),
        "pooler.dense.bias": w(hidden),
    }
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for name in ("q", "k", "v", "o"):
            scale = layer_scale * (0.4 if name == "o" else 1.0)
            tensors[p + f"attention.attn.{name}.weight"] = w(hidden, hidden, scale=scale)
            tensors[p + f"attention.attn.{name}.bias"] = w(hidden)
        tensors[p + "attention.LayerNorm.weight"] = 1 + w(hidden, scale=0.1)
        tensors[p + "attention.LayerNorm.bias"] = w(hidden, scale=0.1)
        tensors.update(_feed_forward_tensors(w, p, hidden, intermediate, layer_scale))
    save_file(tensors, str(path / "model.safetensors"))
    config = {
        "architectures": ["MPNetModel"], "model_type": "mpnet", "vocab_size": vocab,
        "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
        "intermediate_size": intermediate, "max_position_embeddings": 66, "hidden_act": "gelu",
        "layer_norm_eps": 1e-5, "relative_attention_num_buckets": 32, "pad_token_id": 1,
        "bos_token_id": 0, "eos_token_id": 2,
    }  # fmt: skip
    (path / "config.json").write_text(json.dumps(config))
    (path / "vocab.txt").write_text("\n".join(MPNET_VOCABULARY) + "\n")
    (path / "tokenizer_config.json").write_text(json.dumps({
        "do_lower_case": True, "strip_accents": None, "tokenizer_class": "MPNetTokenizer",
        "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
        "unk_token": "[UNK]", "pad_token": "<pad>", "mask_token": "<mask>",
    }))  # fmt: skip
    _sentence_transformers_files(path, hidden)
    return path
