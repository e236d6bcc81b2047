"""Saving Keras models and weights atomically, also when the process is killed mid-save."""

from __future__ import annotations

import os
import signal
import time

import keras
import numpy as np
import pytest

from helpers import assert_weights_equal, run_child, tiny_data, tiny_model, wait_for
from transferkit.files import remove_partial_files
from transferkit.training.io import load_weights, save_model_atomic, save_weights_atomic


def test_save_model_and_weights_atomic(tmp_path):
    model = tiny_model()
    save_model_atomic(model, tmp_path / "model.keras")
    save_weights_atomic(model, tmp_path / "model.weights.h5")
    assert sorted(os.listdir(tmp_path)) == ["model.keras", "model.weights.h5"]
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert_weights_equal(loaded.get_weights(), model.get_weights())
    # The file holds the model's weights only, so it loads into a compiled, an uncompiled and an
    # already trained model alike.
    for other in (tiny_model(seed=1), keras.Sequential.from_config(model.get_config())):
        load_weights(other, tmp_path / "model.weights.h5")
        assert_weights_equal(other.get_weights(), model.get_weights())
    trained = tiny_model(seed=2)
    trained.fit(*tiny_data(8), verbose=0)
    load_weights(trained, tmp_path / "model.weights.h5")
    assert_weights_equal(trained.get_weights(), model.get_weights())
    with pytest.raises(ValueError, match=r"must end in `\.keras`"):
        save_model_atomic(model, tmp_path / "model.h5")
    with pytest.raises(ValueError, match=r"must end in `\.weights\.h5`"):
        save_weights_atomic(model, tmp_path / "model.h5")


def test_failed_weights_save_leaves_the_old_file(tmp_path):
    path = tmp_path / "w.weights.h5"
    path.write_bytes(b"previous weights")
    unbuilt = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="not yet been built"):
        save_weights_atomic(unbuilt, path)
    assert os.listdir(tmp_path) == ["w.weights.h5"]
    assert path.read_bytes() == b"previous weights"


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")
def test_sigkill_during_saves_never_leaves_a_partial_file(tmp_path):
    # The child saves a ~8 MB model over and over; the parent kills it at arbitrary moments in the
    # middle of those saves. The target must always load, and partial temporary files are hidden
    # and removable.
    child = run_child(
        """
        import pathlib, keras
        from transferkit.files import atomic_write
        from transferkit.training.io import save_weights_atomic
        model = keras.Sequential([keras.Input((1000,)), keras.layers.Dense(2000)])
        target = pathlib.Path("big.weights.h5")
        save_weights_atomic(model, target)
        pathlib.Path("ready").touch()
        i = 0
        while True:
            i += 1
            model.layers[0].kernel.assign(model.layers[0].kernel + 1.0)
            save_weights_atomic(model, target)
            with atomic_write("counter.txt", "w") as handle:
                handle.write("%d " % i * 20000)
        """,
        tmp_path,
    )
    wait_for(tmp_path / "ready", child)
    time.sleep(1.0)  # several saves in flight
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    child.stderr.close()
    model = keras.Sequential([keras.Input((1000,)), keras.layers.Dense(2000)])
    model.load_weights(tmp_path / "big.weights.h5")  # complete, whatever the moment of the kill
    kernel = model.layers[0].kernel.numpy()
    assert np.ptp(kernel - kernel[0, 0]) < 1.5  # one consistent save, not a mix of two
    if (tmp_path / "counter.txt").exists():
        words = (tmp_path / "counter.txt").read_text().split()
        assert len(words) == 20000 and len(set(words)) == 1
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert all(".tmp-" in name for name in leftovers)
    assert remove_partial_files(tmp_path) == len(leftovers)
    assert sorted(p.name for p in tmp_path.iterdir()) in (
        ["big.weights.h5", "ready"],
        ["big.weights.h5", "counter.txt", "ready"],
    )
