"""The base install is a world of its own: every command a user of `pip install transferkit`
(no extras) can run works, and each command that needs an extra says which, in one line.

One child process (`base_world.py`) hides every module that only the extras bring (jax, ray,
mlflow, fastapi, uvicorn, python-multipart, ai-edge-litert, onnxconverter-common, torch,
selenium, and what they pull in) and runs the command lines of `base_world.steps` in order, on
tiny data: an image model trained on fewer than 256 images (features on Keras) and on 256
(features on ONNX Runtime), a text model of each encoder kind (GloVe + BiLSTM, a transformer
fine-tuned), then predict, evaluate, export, embed, a batch job, check and rank on them.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

CHILD_TIMEOUT = 900  # seconds; the child runs beside the rest of the suite (about 1 minute alone)


@pytest.fixture(scope="module")
def base_world():
    """The results of every step of `base_world.steps`, run in the child that `conftest.py`
    started when the test run began (waiting for it here if it is still running)."""
    import base_world as child

    if child.ROOT_VARIABLE not in os.environ:
        pytest.fail("conftest.py did not start the base-world child: it starts when the run's "
                    "paths include tests/test_base_install.py (or a folder above it)")
    root = Path(os.environ[child.ROOT_VARIABLE])
    world = child.results(root, timeout=CHILD_TIMEOUT)
    world["log"] = (root / "child.log").read_text(errors="replace")
    world["steps"] = {step["name"]: step for step in json.loads((root / "steps.json").read_text())}
    world["by_name"] = {result["name"]: result for result in world["results"]}
    return world


def test_the_world_hides_every_extra(base_world):
    """What the child hid: the extras' modules, not the base's (keras-hub needs tokenizers)."""
    hidden = set(base_world["blocked"])
    assert {"jax", "ray", "mlflow", "fastapi", "uvicorn", "python_multipart", "ai_edge_litert",
            "onnxconverter_common", "torch", "selenium"} <= hidden
    assert not hidden & {"keras", "tensorflow", "tokenizers", "onnxruntime", "tf2onnx", "numpy"}
    assert base_world["loaded"] == []


def test_every_module_imports_or_names_its_extra(base_world):
    """Importing any transferkit module without the extras works, or raises
    MissingDependencyError with the pip line (the server, Ray): never a bare ImportError."""
    modules = base_world["modules"]
    assert len(modules) > 60
    broken = {name: outcome for name, outcome in modules.items()
              if outcome != "ok" and not outcome.startswith("needs an extra: ")}
    assert not broken, broken
    needing = {name for name, outcome in modules.items() if outcome != "ok"}
    assert "transferkit.serving.app" in needing
    for name in needing:
        assert "pip install 'transferkit[" in modules[name], (name, modules[name])


def _works(world, name) -> dict:
    result = world["by_name"][name]
    assert result["traceback"] is None, f"{name}: {result['traceback']}"
    assert result["code"] == 0, f"{name}: {result['stderr'][-2000:]}"
    assert "Traceback" not in result["stdout"] + result["stderr"], name
    return json.loads(result["stdout"].strip().splitlines()[-1])


def test_training_works_without_extras(base_world):
    keras_run = _works(base_world, "train images (Keras features)")
    onnx_run = _works(base_world, "train images (ONNX features)")
    assert keras_run["feature_runtime"] == "keras"  # 19 training images: below MIN_ITEMS
    assert onnx_run["train_images"] == 256
    assert onnx_run["feature_runtime"] == "onnx", onnx_run["feature_runtime_reason"]
    for name in ("train text glove-bilstm", "train text transformer"):
        result = _works(base_world, name)
        assert Path(result["model_path"]).is_file(), name


@pytest.mark.parametrize("name", [
    "predict image", "predict text", "predict batch job", "evaluate image", "evaluate text",
    "export saved_model", "export image onnx", "export text onnx", "embed", "check", "rank",
])
def test_using_a_model_works_without_extras(base_world, name):
    _works(base_world, name)


@pytest.mark.parametrize("name", [
    "serve", "predict --ray", "train --distribute", "train --track", "runs", "models list",
    "export litert", "export onnx float16", "tune",
])
def test_a_command_that_needs_an_extra_names_it_in_one_line(base_world, name):
    result = base_world["by_name"][name]
    extra = base_world["steps"][name]["extra"]
    assert result["traceback"] is None, f"{name}: {result['traceback']}"
    assert result["code"] == 1, (name, result["stdout"][-1000:], result["stderr"][-1000:])
    lines = result["stderr"].strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("transferkit: error: ")
    assert f"pip install 'transferkit[{extra}]'" in lines[0]


def test_nothing_from_tensorflow_on_screen(base_world):
    """No TensorFlow warning reaches the screen: not in what the commands printed, not in the
    child's own output (TensorFlow's logger may write to the process's stderr directly)."""
    printed = [base_world["log"]] + [r["stdout"] + r["stderr"] for r in base_world["results"]]
    for text in printed:
        assert not re.search(r"^(WARNING:tensorflow|W0000 |E0000 )", text, re.M), text[-2000:]
        assert "retracing" not in text
