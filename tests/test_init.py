"""The public names: listed once in `__all__`, each importable, and cheap to import."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap

import pytest

import transferkit

EXPECTED = {
    "BackboneSpec", "DataError", "ImageClassifier", "ImageEncoder", "ModelRef", "RunFolder", "ImageReadError", "ImageTrainConfig",
    "InputError", "MissingDependencyError", "TextClassifier", "TextTrainConfig",
    "TransferkitError", "UnknownBackboneError", "UnsafeCheckpointError", "WeightsError",
    "WeightsUnavailableError", "__version__", "backbone_table", "extract_features",
    "get_backbone", "get_spec", "list_backbones", "load", "load_image", "pipeline",
    "predict_imagenet", "train_images", "train_text", "batch_predict", "batch_embed",
    "check_data", "rank_backbones", "tune", "predict", "embed",
}
ALIASES = {"predict": "batch_predict", "embed": "batch_embed"}  # the batch jobs' earlier names


def test_all_lists_the_public_api():
    assert set(transferkit.__all__) == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED - {"__version__"} - set(ALIASES)))
def test_every_public_name_resolves_to_where_it_is_defined(name):
    value = getattr(transferkit, name)
    module = importlib.import_module(transferkit._EXPORTS[name])
    assert value is getattr(module, name) and value.__module__.startswith("transferkit.")
    assert value.__module__ == transferkit._EXPORTS[name]  # where it is defined, no re-export


def test_the_batch_jobs_earlier_names_still_work():
    for old, new in ALIASES.items():
        assert getattr(transferkit, old) is getattr(transferkit, new)


def test_unknown_attribute_is_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        transferkit.nope  # noqa: B018


# A None entry in sys.modules makes `import tensorflow` fail the way a missing package does, while
# `importlib.util.find_spec` (which torch._dynamo calls) still answers None instead of raising.
BLOCK_TENSORFLOW = textwrap.dedent(
    """
    import sys
    sys.modules["tensorflow"] = None
    """
)


@pytest.mark.slow  # a child process importing torch (~6 s)
@pytest.mark.parametrize("backend", ["torch"])
def test_import_and_build_without_tensorflow(backend):
    """The lent GPU machine has JAX and torch but no TensorFlow: the registry must still work."""
    pytest.importorskip(backend)
    code = BLOCK_TENSORFLOW + textwrap.dedent(
        """
        import numpy as np
        import transferkit
        names = transferkit.list_backbones()
        assert "efficientnet_lite0" in names and "mobilenet_v2" in names, names
        model = transferkit.get_backbone("efficientnet_lite0", weights=None, input_shape=(64, 64, 3))
        out = model.predict(np.zeros((1, 64, 64, 3), "float32"), verbose=0)
        assert out.shape == (1, 2, 2, 1280), out.shape
        import keras
        assert keras.backend.backend() == "{backend}"
        assert sys.modules.get("tensorflow") is None
        print("ok", len(names))
        """
    ).replace("{backend}", backend)
    env = dict(os.environ, KERAS_BACKEND=backend)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().startswith("ok")


def test_import_is_light():
    """`import transferkit` loads neither Keras nor TensorFlow; they load on first use."""
    code = "import sys, transferkit; print(sorted(m for m in ('keras', 'tensorflow') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
