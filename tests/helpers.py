"""Helpers shared by the tests: tiny real data made on the fly (faces, toy reviews, word vectors,
a random BERT folder), and the location of the shared development data.

Importable from any test module (`pythonpath = ["tests"]` in pyproject.toml); the fixtures that
use them are in conftest.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SRC = Path(__file__).resolve().parents[1] / "src"


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, or a skip that says why when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs the shared dev data at {path} (present in CI and dev machines)")
    return path


def photo(height=60, width=80, seed=0) -> np.ndarray:
    """A smooth colour image (JPEG-friendly), different for each seed."""
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 6, 3)
    channels = [127 + 120 * np.sin(x / (7 + 3 * c) + y / 11 + phase[c]) for c in range(3)]
    return np.stack(channels, axis=-1).astype(np.uint8)


def write_faces(folder: Path, per_class: int) -> Path:
    """`per_class` real faces and non-faces from skimage's lfw_subset as class folders of PNGs."""
    import skimage.data
    from PIL import Image

    images = skimage.data.lfw_subset()  # 100 faces, then 100 non-faces; 25x25 in [0, 1]
    for label, offset in (("face", 0), ("not_face", 100)):
        (folder / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = (images[offset + i] * 255).round().astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(folder / label / f"{label}_{i:03d}.png")
    return folder


# -- toy reviews and word vectors -------------------------------------------------------------

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


def write_vectors_file(path: Path) -> Path:
    """GloVe-format vectors: positive words along +e0, negative along -e0, filler random."""
    rng = np.random.default_rng(0)
    lines = []
    for word in POSITIVE + NEGATIVE + FILLER + ["okay", "fine"]:
        vector = rng.normal(0, 0.3, 8)
        vector[0] += 2.0 if word in POSITIVE else -2.0 if word in NEGATIVE else 0.0
        vector[1] += 2.0 if word in ("okay", "fine") else 0.0
        lines.append(word + " " + " ".join(f"{v:.5f}" for v in vector))
    path.write_text("\n".join(lines) + "\n")
    return path


def write_table(path: Path, n: int = 60, seed: int = 0, bad_rows: bool = True) -> Path:
    """A CSV of toy reviews (`id,review,sentiment`), with two unusable rows at the end."""
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
    "the",
    "a",
    "movie",
    "film",
    "is",
    "was",
    "great",
    "good",
    "bad",
    "dull",
    "fun",
    "boring",
    "and",
    "but",
    "not",
    "very",
    "cafe",
    "plot",
    "story",
    "actors",
    "acting",
    "it",
    "this",
    "that",
    "of",
    "to",
    "too",
    "long",
    "short",
    "funny",
    "sad",
    "love",
    "hate",
    "best",
    "worst",
    "ever",
]
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
    path, *, hidden=16, layers=2, heads=2, intermediate=32, seed=0, pooling=None, layer_scale=0.5
):
    """Writes a random BERT in Hugging Face sentence-transformers layout to `path`.

    `layer_scale` is the spread of the attention and feed-forward weights: small values keep each
    token close to its own embedding (a random encoder whose outputs still tell words apart).
    """
    from safetensors.numpy import save_file

    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    vocab = len(VOCABULARY)

    def w(*shape, scale=0.2):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

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
        tensors[p + "intermediate.dense.weight"] = w(intermediate, hidden, scale=layer_scale)
        tensors[p + "intermediate.dense.bias"] = w(intermediate)
        tensors[p + "output.dense.weight"] = w(hidden, intermediate, scale=layer_scale * 0.4)
        tensors[p + "output.dense.bias"] = w(hidden)
        tensors[p + "output.LayerNorm.weight"] = 1 + w(hidden, scale=0.1)
        tensors[p + "output.LayerNorm.bias"] = w(hidden, scale=0.1)
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
    (path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 32}))
    (path / "modules.json").write_text(
        json.dumps(
            [
                {
                    "idx": 0,
                    "name": "0",
                    "path": "",
                    "type": "sentence_transformers.models.Transformer",
                },
                {
                    "idx": 1,
                    "name": "1",
                    "path": "1_Pooling",
                    "type": "sentence_transformers.models.Pooling",
                },
                {
                    "idx": 2,
                    "name": "2",
                    "path": "2_Normalize",
                    "type": "sentence_transformers.models.Normalize",
                },
            ]
        )
    )
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
    return path


# -- a tiny Keras model and processes to kill -------------------------------------------------


def tiny_data(n=64, seed=0):
    """`(x, y)`: 4 features, a linear rule for 2 classes."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype("int32")
    return x, y


def tiny_model(seed=0, learning_rate=0.05, metrics=("accuracy",)):
    """A compiled two-layer model for `tiny_data`."""
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2)]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=list(metrics),
    )
    return model


def assert_weights_equal(a, b, **tolerance):
    assert len(a) == len(b)
    for left, right in zip(a, b):
        np.testing.assert_allclose(left, right, **tolerance)


def run_child(script: str, tmp_path: Path) -> subprocess.Popen:
    """Runs a Python script in a child process (for tests that kill it), in `tmp_path`."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"), TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def wait_for(path: Path, process: subprocess.Popen, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"child exited early: {process.stderr.read().decode()[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"timed out waiting for {path}")
        time.sleep(0.02)


# -- reports -------------------------------------------------------------------------------

# Five epochs of two phases, as `history.csv` holds them.
HISTORY = [
    {"phase": "head", "epoch": e, "loss": 1 / e, "accuracy": 0.5 + 0.1 * e,
     "val_loss": 1.2 / e, "val_accuracy": 0.45 + 0.1 * e}
    for e in (1, 2, 3)
] + [
    {"phase": "fine_tune", "epoch": e, "loss": 0.2 / e, "accuracy": 0.85 + 0.02 * e,
     "val_loss": 0.3 / e, "val_accuracy": 0.8 + 0.02 * e}
    for e in (1, 2)
]


def one_hot_probabilities(predicted, k, confidence=0.9):
    """Probabilities that put `confidence` on each predicted class."""
    probabilities = np.full((len(predicted), k), (1 - confidence) / (k - 1))
    probabilities[np.arange(len(predicted)), predicted] = confidence
    return probabilities


def png_size(path):
    """The size of a PNG file that shows something (not a blank canvas)."""
    from PIL import Image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.load()
        array = np.asarray(image.convert("L"))
    assert array.std() > 5  # something is drawn
    return image.size


def refused_in_one_line(result, *fragments: str) -> str:
    """The one error line of a refused command (exit 1, no traceback: the corpus's promise),
    checked for each of `fragments`; `result` is `(exit code, stdout, stderr)`."""
    code, out, err = result
    assert code == 1, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("transferkit: error: ") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


class LockHolder:
    """Another live process that holds a folder's `RunLock`, as a running `train` or batch job
    does (the folder is made first if missing). `kill()` ends it as `kill -9` would."""

    def __init__(self, folder: Path):
        script = textwrap.dedent(f"""
            import time
            from pathlib import Path
            from transferkit.run_folder import RunLock
            Path({str(folder)!r}).mkdir(parents=True, exist_ok=True)
            lock = RunLock({str(folder)!r})
            print("held", flush=True)
            time.sleep(120)
        """)
        self.process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                        text=True, env=dict(os.environ, PYTHONPATH=str(SRC)))
        assert self.process.stdout.readline().strip() == "held"
        self.pid = self.process.pid

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self.process.stdout.close()
