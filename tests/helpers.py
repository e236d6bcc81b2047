"""Helpers shared by the tests: tiny real data made on the fly (faces, toy reviews, word vectors,
a random BERT folder: from `transferkit.testing`, which users' tests share), and the location of
the shared development data.

Importable from any test module (`pythonpath = ["tests"]` in pyproject.toml); the fixtures that
use them are in conftest.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from transferkit.testing import (  # noqa: F401  (shared with users' tests: transferkit.testing)
    FILLER,
    NEGATIVE,
    POSITIVE,
    SENTENCES,
    SPECIAL,
    VOCABULARY,
    WORDS,
    tiny_bert_folder,
    toy_texts,
    write_faces,
    write_table,
    write_vectors_file,
)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SRC = Path(__file__).resolve().parents[1] / "src"


def once_across_workers(tmp_path_factory, name: str, produce):
    """`(produce(folder)'s JSON result, folder)`, computed by the first pytest-xdist worker to ask
    and read by the others from the temporary folder all workers share (pytest-xdist's recipe:
    a `FileLock` in the base temporary folder's parent). For a fixture that costs minutes: each
    worker would compute it again, two at once on two cores. Without xdist: computed here.
    (`--dist loadgroup` would keep a module on one worker, but pytest-xdist 3.8 marks groups
    through a node attribute pytest 9 no longer reads: its groups are silently ignored.)"""
    import json

    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    folder, answer = root / name, root / f"{name}.json"
    with FileLock(str(answer) + ".lock"):
        if not answer.is_file():
            answer.write_text(json.dumps(produce(folder), default=str))
    return json.loads(answer.read_text()), folder


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


def weight_arrays(path: Path) -> dict:
    """Every array of a `.weights.h5` file, or of the weights inside a `.keras` file, by name."""
    import io
    import zipfile

    import h5py

    if path.suffix == ".keras":
        with zipfile.ZipFile(path) as archive:
            path = io.BytesIO(archive.read("model.weights.h5"))
    arrays = {}

    def take(name, item):
        # Not weights: the optimizer of a model nested in the network (a sentence encoder's head,
        # compiled for the head phase), built only by a process that trained that phase.
        if isinstance(item, h5py.Dataset) and "/optimizer/" not in name:
            arrays[name] = item[()]

    with h5py.File(path, "r") as handle:
        handle.visititems(take)
    return arrays
