"""Data-parallel training (keras.distribution on JAX): two devices, and two processes on
127.0.0.1, end with the weights of one device for the same global batch and seed.

Each run is a child process with `KERAS_BACKEND=jax` (this test process runs TensorFlow) and
`XLA_FLAGS=--xla_force_host_platform_device_count=N` virtual CPU devices, on 40 real photos at 64
px, with augmentation (its layers must compile) and a fine-tuning epoch of every layer (a
BatchNormalization among them). On the tiny `test_cnn` backbone (`transferkit.testing`): what is
tested is how the batch is split and the weights kept in step, the same for any model; JAX
compiling EfficientNet-Lite0 cost each child process about two minutes (five children, ~8 minutes
of CI).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from helpers import once_across_workers, shared_data
from transferkit.cli import main

SCRIPT = """
    import json, sys
    import transferkit
    out, processes = sys.argv[1], json.loads(sys.argv[2])
    if sys.argv[3] == "resume":
        result = transferkit.train_images(resume=out, processes=processes or None, verbose=0,
                                          log=print)
    else:
        result = transferkit.train_images(
            sys.argv[3], output=out, backbone="test_cnn", image_size=64, epochs=2, fine_tune_epochs=1, batch_size=8,
            augment="flip,rotate,zoom", augment_views=1, unfreeze="all", verbose=0,
            distribute="data-parallel", processes=processes or None, log=print)
    print("RESULT " + json.dumps({"accuracy": result["validation_accuracy"],
                                  "run_dir": result["run_dir"]}))
"""


def _jax_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("jax") is not None


needs_jax = pytest.mark.skipif(not _jax_available(),
                               reason="JAX is not installed (pip install 'transferkit[scale]')")


def _start(tmp: Path, data: Path, output: Path, devices: int, processes: dict | None = None,
           cache: Path | None = None) -> subprocess.Popen:
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src"))
    if cache is not None:
        env["TRANSFERKIT_CACHE_DIR"] = str(cache)
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), str(output), json.dumps(processes or {}),
         str(data)], cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen, timeout: float = 600) -> tuple[dict, str]:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-4000:]
    line = next(line for line in out.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):]), out


def _weights(run: Path) -> list[np.ndarray]:
    import transferkit

    return transferkit.load(run).model.get_weights()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """20 cats and 20 dogs from the shared photos."""
    source = shared_data("cats_and_dogs") / "train"
    data = tmp_path_factory.mktemp("photos") / "data"
    for kind in ("cats", "dogs"):
        (data / kind).mkdir(parents=True)
        for path in sorted((source / kind).glob("*.jpg"))[:20]:
            shutil.copy(path, data / kind / path.name)
    return data


@pytest.fixture(scope="module")
def one_device(photos, tmp_path_factory):
    """The reference: the same run on one device (once for all xdist workers)."""

    def reference(tmp: Path) -> dict:
        tmp.mkdir(parents=True, exist_ok=True)
        result, out = _finish(_start(tmp, photos, tmp / "run", devices=1))
        return {"result": result, "log": out}

    answer, tmp = once_across_workers(tmp_path_factory, "distribute-one-device", reference)
    return answer["result"], answer["log"], tmp / "run"


def _same_weights(left: list, right: list) -> float:
    assert len(left) == len(right)
    return max(float(np.max(np.abs(a - b))) if a.size else 0.0 for a, b in zip(left, right))


@pytest.mark.slow
@needs_jax
def test_two_devices_train_to_the_weights_of_one(photos, one_device, tmp_path):
    reference, reference_log, reference_run = one_device
    result, log = _finish(_start(tmp_path, photos, tmp_path / "run", devices=2))
    assert "Data-parallel: 2 devices in 1 process(es), 4 examples per device a step" in log
    assert "Data-parallel: 1 devices in 1 process(es), 8 examples per device a step" in (
        reference_log)
    assert _same_weights(_weights(reference_run), _weights(tmp_path / "run")) <= 1e-4
    assert result["accuracy"] == reference["accuracy"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
@needs_jax
def test_two_processes_train_to_the_weights_of_one_and_only_process_0_writes(
        photos, one_device, tmp_path):
    reference, _, reference_run = one_device
    coordinator = f"127.0.0.1:{_free_port()}"
    output = tmp_path / "run"
    children = [
        _start(tmp_path, photos, output, devices=1, cache=tmp_path / "cache",
               processes={"coordinator": coordinator, "num_processes": 2, "process_id": i})
        for i in (0, 1)
    ]
    (first, log), (second, _) = [_finish(child) for child in children]
    assert "Data-parallel: 2 devices in 2 process(es)" in log
    assert first["run_dir"] == str(output) and second["run_dir"] != str(output)
    assert not str(second["run_dir"]).startswith(str(output))  # process 1 kept its copy apart
    trained = _weights(output)
    assert _same_weights(_weights(reference_run), trained) <= 1e-4
    assert first["accuracy"] == second["accuracy"] == reference["accuracy"]

    # Resumed (here: already finished) on both; process 1 restarts from a copy of process 0's
    # folder, not from its own scratch folder (removed here).
    shutil.rmtree(second["run_dir"])
    coordinator = f"127.0.0.1:{_free_port()}"
    children = [
        _start(tmp_path, "resume", output, devices=1, cache=tmp_path / "cache",
               processes={"coordinator": coordinator, "num_processes": 2, "process_id": i})
        for i in (0, 1)
    ]
    (first, log), (second, _) = [_finish(child) for child in children]
    assert f"Resuming {output}" in log
    assert first["accuracy"] == second["accuracy"] == reference["accuracy"]
    assert _same_weights(trained, _weights(output)) == 0.0


def test_data_parallel_on_tensorflow_says_what_backend_it_needs(faces, tmp_path, capsys):
    code = main(["train", "images", str(faces), "--distribute", "data-parallel", "--output",
                 str(tmp_path / "run"), "--epochs", "1", "--image-size", "64"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.strip().endswith("--distribute data-parallel.")
    assert "needs KERAS_BACKEND=jax" in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_data_parallel_text_says_it_is_for_images(text_run, capsys):
    table = text_run[4]
    code = main(["train", "text", str(table), "--distribute", "data-parallel", "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 1 and "Data-parallel training is for images for now" in err
    assert "Train text without --distribute" in err
