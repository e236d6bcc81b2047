"""Frozen models on the faster runtime: Keras, or ONNX Runtime over a graph exported once.

A frozen backbone (or text encoder) computes nearly all of a head-only run's time, and its
weights do not change while it is frozen. ONNX Runtime runs EfficientNet-Lite0 2.5-3.4x faster
than Keras `predict` on a CPU (`benchmarks/feature_speed.py`), so feature extraction asks for a
runner:

    run = frozen_runner(feature_model, runtime="auto", key={"backbone": "efficientnet_lite0"},
                        cache=cache_root, items=len(images))
    features = run(batch)          # numpy in, float32 numpy out, whichever runtime it is
    run.runtime, run.reason        # "onnx" or "keras", and why

`keras.Model.export(format="onnx")` writes the graph (tf2onnx on TensorFlow) once per model,
weights and input shape, into `<cache>/onnx/<sha256>.onnx`, where the key hashes the caller's
parts, the weights themselves and the converter versions. A new graph is checked against Keras
on the first batch it runs (the largest absolute difference must be at most `TOLERANCE`, 1e-4)
and both runtimes are timed on that batch; the verdict is stored beside the graph
(`<sha256>.json`), so later runs trust or avoid it without checking again.

`runtime="auto"` runs ONNX Runtime when it is installed, the kind of model is one it speeds up
(`faster`: CNN backbones yes, sentence encoders no), the graph is cached or there are at least
`MIN_ITEMS` inputs (the export, about 5 s, must pay for itself), and the graph passed its check
and was faster; otherwise, and for anything that goes wrong on the way (a converter or runtime
error), Keras, with `reason` saying why. `runtime="onnx"` insists, and raises instead.
Training (fine-tuning) always stays in Keras.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
import time
import warnings
import weakref
from pathlib import Path
from typing import Any, Callable

import numpy as np

from transferkit.checks import RUNTIMES, check_choice
from transferkit.errors import (
    MissingDependencyError,
    RuntimeMismatchError,
    TransferkitError,
)

__all__ = [
    "MIN_ITEMS",
    "ONNX_BATCH",
    "RUNTIMES",
    "TOLERANCE",
    "FrozenRunner",
    "check_runtime",
    "frozen_runner",
    "constant_normalization",
]

TOLERANCE = 1e-4  # the most a feature may differ from Keras's, absolute
MIN_ITEMS = 256  # with no graph cached, "auto" exports one only for at least this many inputs
# Rows per ONNX Runtime call: EfficientNet-Lite0 runs ~4% faster in batches of 8 than of 32 on
# two cores (180 vs 173 images/s, five alternating rounds; benchmarks/feature_speed.py has the
# batch 8/16/32/64 rows); callers may pass bigger batches.
ONNX_BATCH = 8
_GRAPH_VERSION = 1  # bump when the way graphs are exported changes, to retire old ones
_SESSIONS: dict[str, Any] = {}
_LOCK = threading.Lock()


def check_runtime(runtime) -> str:
    """`runtime` if it is one of `RUNTIMES`, else an `InputError` naming them."""
    return check_choice(runtime, "runtime", RUNTIMES)


def _keras_call(model) -> Callable:
    """`model` on one batch, as numpy: `predict_on_batch`, or for token-id dicts the traced
    function of `transferkit.data.sequences` (one trace for every sequence length)."""
    from transferkit.data.sequences import predict_function

    def call(inputs):
        import keras

        from transferkit.training.distribute import for_prediction, fresh_functions, padded_rows

        with for_prediction(model) as local:
            fresh_functions(local)

            def run(rows):
                if isinstance(rows, dict):
                    return keras.ops.convert_to_numpy(predict_function(local, rows)(rows))
                return keras.ops.convert_to_numpy(local.predict_on_batch(rows))

            return np.asarray(padded_rows(run, inputs), dtype=np.float32)

    return call


class FrozenRunner:
    """A frozen Keras model's forward pass on one runtime; `runner(batch)` -> float32 numpy.

    Made by `frozen_runner`. `runtime` says which runtime runs it (`"keras"` or `"onnx"`),
    `reason` why (a line for the log), `max_abs_diff` what the check of a new graph measured.
    """

    def __init__(self, model, runtime: str, reason: str, *, path: Path | None = None,
                 session=None, verify: bool = False, strict: bool = False, scratch=None):
        self.model = model
        self.runtime = runtime
        self.reason = reason
        self.path = path
        self.max_abs_diff: float | None = None
        self._keras = _keras_call(model)
        self._session = session
        self._verify = verify
        self._strict = strict
        if scratch is not None:  # a graph in a temporary folder goes with its runner
            weakref.finalize(self, shutil.rmtree, scratch, True)

    def __repr__(self) -> str:
        return f"FrozenRunner(runtime={self.runtime!r}, path={self.path})"

    def __call__(self, inputs) -> np.ndarray:
        if self.runtime == "keras":
            return self._keras(inputs)
        if self._verify:
            return self._first(inputs)
        return self._onnx(inputs)

    def _onnx(self, inputs) -> np.ndarray:
        feeds = {}
        for spec in self._session.get_inputs():
            value = inputs[spec.name] if isinstance(inputs, dict) else inputs
            feeds[spec.name] = np.asarray(value, dtype=_NUMPY_TYPES.get(spec.type, np.float32))
        count = len(next(iter(feeds.values())))
        parts = [
            self._session.run(None, {k: v[i:i + ONNX_BATCH] for k, v in feeds.items()})[0]
            for i in range(0, count, ONNX_BATCH)
        ]
        return np.asarray(np.concatenate(parts) if len(parts) != 1 else parts[0],
                          dtype=np.float32)

    def _first(self, inputs) -> np.ndarray:
        """The first batch of a new graph: compared with Keras and timed against it (each
        runtime's second run, after tracing and warm-up); the verdict is stored for good."""
        self._verify = False
        try:
            outputs = self._onnx(inputs)
        except Exception as exc:  # ONNX Runtime refusing shapes of a graph it loaded
            why = f"{type(exc).__name__}: {exc}"
            _write_verdict(self.path, {"passed": False, "error": why})
            return self._keras_instead(f"ONNX Runtime failed on the graph ({why})", exc, inputs)
        expected = self._keras(inputs)
        keras_seconds, onnx_seconds = _timed(self._keras, inputs), _timed(self._onnx, inputs)
        diff = float(np.max(np.abs(outputs - expected))) if expected.size else 0.0
        self.max_abs_diff = diff
        passed = bool(np.isfinite(diff) and diff <= TOLERANCE)
        _write_verdict(self.path, {
            "passed": passed, "max_abs_diff": diff, "tolerance": TOLERANCE,
            "batch": len(expected), "keras_seconds": keras_seconds,
            "onnx_seconds": onnx_seconds,
        })
        if not passed:
            return self._keras_instead(
                f"ONNX Runtime's output differs from Keras's by up to {diff:.3g} (more than "
                f"{TOLERANCE:g}) for {self.path.name}", RuntimeMismatchError, inputs, expected)
        if not self._strict and onnx_seconds >= keras_seconds:
            self.runtime, self._session = "keras", None
            self.reason = _slower(keras_seconds, onnx_seconds)
            return expected
        self.reason += f"; matches Keras within {diff:.1e}"
        return outputs

    def _keras_instead(self, message: str, error, inputs, expected=None) -> np.ndarray:
        """`runtime="onnx"`: raises `message`; `"auto"`: Keras from now on (this batch too)."""
        self.reason = _fallback(message, self._strict, error)
        self.runtime, self._session = "keras", None
        return expected if expected is not None else self._keras(inputs)


def _timed(function, inputs) -> float:
    started = time.perf_counter()
    function(inputs)
    return time.perf_counter() - started


def _slower(keras_seconds: float, onnx_seconds: float) -> str:
    return (f"ONNX Runtime was not faster than Keras for this model ({onnx_seconds:.3f} s vs "
            f"{keras_seconds:.3f} s a batch); running Keras")


_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(int32)": np.int32,
                "tensor(int64)": np.int64, "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_}


def _session(path: Path, shared: bool):
    """An ONNX Runtime session on every core; with `shared`, one per graph file and process
    (loading one takes a second)."""
    import onnxruntime as ort

    with _LOCK:
        session = _SESSIONS.get(os.fspath(path)) if shared else None
        if session is None:
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.intra_op_num_threads = os.cpu_count() or 1
            # Threads that sleep between batches instead of spinning leave the cores to the
            # threads decoding the next batch (measured: +4% images/s with decoding).
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            session = ort.InferenceSession(os.fspath(path), options,
                                           providers=["CPUExecutionProvider"])
            if shared:
                _SESSIONS[os.fspath(path)] = session
        return session


def _write_verdict(path: Path, verdict: dict) -> None:
    from transferkit.files import atomic_write

    with atomic_write(path.with_suffix(".json"), "w") as handle:
        json.dump(verdict, handle, indent=2)


def _read_verdict(path: Path) -> dict | None:
    try:
        return json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None


def _onnx_missing() -> str | None:
    """The pip line for what ONNX Runtime features need and is not installed, or None."""
    from transferkit.extras import require

    try:
        for module in ("onnxruntime", "onnx", "tf2onnx"):
            require(module, "Running frozen models on ONNX Runtime")
    except TransferkitError as exc:
        return str(exc)
    return None


def _graph_key(model, key: dict) -> str:
    import keras

    from transferkit.training.feature_cache import FeatureCache, weights_digest

    versions = {"keras": keras.__version__, "backend": keras.backend.backend()}
    for module in ("tf2onnx", "onnx"):
        versions[module] = getattr(__import__(module), "__version__", "")
    return FeatureCache.key(kind="onnx-graph", version=_GRAPH_VERSION,
                            weights=weights_digest(model), versions=versions, **key)


def _example(model):
    """A batch of one for `model`'s inputs: ones, each unknown length 8 (attention over a single
    token makes Keras warn about a softmax over one value)."""
    def one(tensor):
        shape = [side or (1 if axis == 0 else 8) for axis, side in enumerate(tensor.shape)]
        return np.ones(shape, tensor.dtype)

    if isinstance(model.input, dict):
        return {name: one(tensor) for name, tensor in model.input.items()}
    return one(model.inputs[0]) if len(model.inputs) == 1 else [one(t) for t in model.inputs]


@contextlib.contextmanager
def constant_normalization(model):
    """While exporting, every `Normalization` layer (transferkit's text heads; the preprocessing
    inside keras.applications' EfficientNets) holds its mean and variance as numpy constants.

    Keras 3 keeps them as eager tensors (after `adapt`, loading, or from the constructor);
    `tf.function` captures those as extra graph inputs, which tf2onnx then leaves as inputs of
    the ONNX model (the export needs values nobody has, and ONNX Runtime rejects the batch).
    Numpy values are traced as constants by every converter. Restored on exit.
    """
    import keras

    from transferkit.layers import all_layers

    patched = []
    for layer in all_layers(model, include_self=False):
        if isinstance(layer, keras.layers.Normalization) and getattr(layer, "mean", None) is not None:
            patched.append((layer, layer.mean, layer.variance))
            for name in ("mean", "variance"):  # bypass Keras's attribute tracking
                value = np.asarray(keras.ops.convert_to_numpy(getattr(layer, name)))
                object.__setattr__(layer, name, value)
    try:
        yield model
    finally:
        for layer, mean, variance in patched:
            object.__setattr__(layer, "mean", mean)
            object.__setattr__(layer, "variance", variance)


def _export(model, path: Path) -> None:
    """Writes `model` as ONNX at `path`, atomically (a killed export leaves no graph)."""
    from transferkit.files import atomic_write

    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as scratch:
        exported = Path(scratch) / "model.onnx"
        model(_example(model), training=False)  # Keras exports only models that were called
        with constant_normalization(model), warnings.catch_warnings():
            # Keras's tf2onnx shim probes `np.object`, which NumPy answers with a FutureWarning.
            warnings.filterwarnings("ignore", message=".*np.object", category=FutureWarning)
            model.export(os.fspath(exported), format="onnx", verbose=False)
        with atomic_write(path, "wb") as handle, open(exported, "rb") as source:
            while chunk := source.read(1 << 20):
                handle.write(chunk)


def frozen_runner(model, *, runtime: str, key: dict, cache: str | os.PathLike | None,
                  items: int, faster: bool = True) -> FrozenRunner:
    """A runner of frozen `model` on `runtime` (see the module docstring).

    Args:
        model: a Keras model (inference only: its weights must not change while it is used).
        runtime: `"auto"`, `"keras"` or `"onnx"`.
        key: what the graph depends on besides the weights (the backbone's name, input size...),
            as `FeatureCache.key` parts.
        cache: the folder of the graphs' `onnx/` sub-folder (the feature cache's); `None`: a
            temporary folder, gone with the runner.
        items: how many inputs will run (for `"auto"`'s choice).
        faster: whether ONNX Runtime runs this kind of model faster than Keras (measured:
            `benchmarks/feature_speed.py`); `"auto"` takes Keras when not. Default `True`.

    Raises:
        MissingDependencyError: `runtime="onnx"` without onnxruntime, onnx or tf2onnx.
        RuntimeMismatchError: `runtime="onnx"` and the graph's output differs from Keras's.
    """
    runtime = check_runtime(runtime)
    if runtime == "keras":
        return FrozenRunner(model, "keras", "runtime 'keras' asked for")
    if runtime == "auto" and not faster:
        return FrozenRunner(model, "keras", "ONNX Runtime is not faster for this model")
    strict = runtime == "onnx"
    missing = _onnx_missing()
    if missing:
        if strict:
            raise MissingDependencyError(missing)
        return FrozenRunner(model, "keras", missing.split(". Install")[0])
    if cache is not None:
        folder = Path(cache) / "onnx"
        folder.mkdir(parents=True, exist_ok=True)
        return _graph_runner(model, folder, key, strict=strict, items=items)
    scratch = tempfile.mkdtemp(prefix="transferkit-onnx-")
    runner = None
    try:
        runner = _graph_runner(model, Path(scratch), key, strict=strict, items=items,
                               scratch=scratch)
    finally:
        if runner is None or runner.runtime != "onnx":
            shutil.rmtree(scratch, ignore_errors=True)
    return runner


def _graph_runner(model, folder: Path, key: dict, *, strict: bool, items: int,
                  scratch: str | None = None) -> FrozenRunner:
    """The ONNX runner of the graph in `folder` (exported if missing), or the Keras one and why."""
    path = folder / f"{_graph_key(model, key)}.onnx"
    verdict = _read_verdict(path) if path.is_file() else None
    if verdict is not None and not verdict.get("passed"):
        why = verdict.get("error") or f"it differed from Keras by {verdict.get('max_abs_diff')}"
        return FrozenRunner(model, "keras", _fallback(
            f"the cached ONNX graph {path.name} failed its check ({why})", strict,
            RuntimeMismatchError))
    if verdict is not None and not strict and (
            verdict.get("onnx_seconds", 0) >= verdict.get("keras_seconds", float("inf"))):
        return FrozenRunner(model, "keras", _slower(verdict["keras_seconds"],
                                                    verdict["onnx_seconds"]))
    if not path.is_file():
        if not strict and items < MIN_ITEMS:
            return FrozenRunner(model, "keras", f"{items} inputs: too few to export a graph for")
        try:
            _export(model, path)
        except Exception as exc:  # tf2onnx raises anything for an operation it cannot convert
            return FrozenRunner(model, "keras", _fallback(
                f"Could not export the frozen model to ONNX ({type(exc).__name__}: {exc})",
                strict, exc))
    try:
        session = _session(path, shared=scratch is None)
    except Exception as exc:  # an operation ONNX Runtime cannot load
        why = f"{type(exc).__name__}: {exc}"
        _write_verdict(path, {"passed": False, "error": why})
        return FrozenRunner(model, "keras", _fallback(
            f"ONNX Runtime could not load the graph ({why})", strict, exc))
    return FrozenRunner(model, "onnx", "ONNX Runtime", path=path, session=session,
                        verify=verdict is None, strict=strict, scratch=scratch)


def _fallback(message: str, strict: bool, error) -> str:
    """`runtime="onnx"`: raises `message` (as `error` when it is an exception class, else chained
    to `error`); `"auto"`: the reason for running Keras instead."""
    if strict:
        kind = error if isinstance(error, type) else TransferkitError
        raise kind(message + ". Use runtime 'keras' (`--runtime keras`).") from (
            None if isinstance(error, type) else error)
    return message + "; running Keras"
