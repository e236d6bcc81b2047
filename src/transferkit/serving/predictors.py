"""One interface over the runtimes a trained model can run on, for the server and the benchmarks.

`load_predictor(path)` takes a `.keras` file (or its run folder) or a folder written by
`transferkit export`, and returns a `Predictor`:

* `task` (`"image"` or `"text"`), `class_names`, `runtime` (`"keras"` or `"onnx"`);
* `facts`: plain data about the model (backbone or encoder, input size, the run's metrics), and
  `card`: its `MODEL_CARD.md` text;
* `image_size` and `resize_policy` (image models): what `predict` takes;
* `predict(items)`: a list of RGB `uint8` arrays of shape `image_size + (3,)`, or a list of
  strings -> `(len(items), len(class_names))` float probabilities, columns in `class_names` order.

Predictors are not thread-safe: the server calls `predict` from one worker thread.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from transferkit.errors import InputError
from transferkit.files import read_json

__all__ = ["Predictor", "KerasPredictor", "OnnxPredictor", "load_predictor", "RUNTIMES"]

RUNTIMES = ("auto", "keras", "onnx")


class Predictor:
    """The common interface; see the module docstring."""

    task: str
    class_names: list[str]
    runtime: str
    path: Path  # the `.keras` file or the export folder it serves
    facts: dict
    card: str
    image_size: tuple[int, int] | None = None
    resize_policy: str | None = None
    target: str = "single-label"  # `transferkit.tasks.targets`: what an output row means
    thresholds: list[float] | None = None  # multi-label: one per label

    def predict(self, items: list) -> np.ndarray:
        raise NotImplementedError

    def metadata(self) -> dict:
        """What the server's `/metadata` answers."""
        return {**self.facts, "runtime": self.runtime}

    def explainer(self):
        """The Keras classifier that explains this predictor's answers (explanations take
        gradients, which an export does not give), or None where there is none (an export
        folder served on its own). Call it in the model's thread: it may load the model."""
        return None


class KerasPredictor(Predictor):
    """A `.keras` classifier run by Keras (the model as saved: raw images or strings in)."""

    runtime = "keras"

    def __init__(self, model):
        from transferkit.export.card import model_card, model_facts
        from transferkit.model_ref import ModelRef
        from transferkit.tasks.base import load

        ref = ModelRef.resolve(model)
        self.path = ref.model_path
        self.classifier = load(ref)
        self.task = self.classifier.task
        self.class_names = list(self.classifier.class_names)
        self.target = self.classifier.target
        self.thresholds = self.classifier.thresholds if self.target == "multi-label" else None
        self.facts = model_facts(self.classifier, ref)
        self.card = model_card(self.facts)
        if self.task == "image":
            self.image_size = tuple(self.classifier.input_size)
            self.resize_policy = self.classifier.resize_policy

    def explainer(self):
        return self.classifier

    def predict(self, items: list) -> np.ndarray:
        if self.task == "image":
            batch = np.stack([np.asarray(item, dtype=np.float32) for item in items])
        else:
            batch = np.asarray([str(t) for t in items], dtype=object)
        return np.asarray(self._call(batch), dtype=np.float32)

    @functools.cached_property
    def _call(self):
        """The model as a compiled graph: eager calls cost ~0.8 s per text request and ~150 ms
        per image (measured); a `tf.function` ~15 ms once traced for a batch size."""
        import keras

        model = self.classifier.model
        if keras.backend.backend() != "tensorflow":
            return lambda batch: model(batch, training=False)
        import tensorflow as tf

        graph = tf.function(lambda batch: model(batch, training=False), reduce_retracing=True)
        return lambda batch: graph(tf.constant(batch))


class OnnxPredictor(Predictor):
    """A folder from `transferkit export --format onnx`, run by ONNX Runtime; text is tokenized
    with the folder's `tokenizer.json` by Hugging Face `tokenizers`. Needs neither Keras nor
    TensorFlow."""

    runtime = "onnx"

    def __init__(self, folder: str | os.PathLike, *, threads: int | None = None):
        from transferkit.extras import require

        folder = Path(folder)
        self.path = folder
        contract = read_json(folder / "input.json")
        if contract.get("format") != "onnx":
            raise InputError(
                f"{folder}: holds a {contract.get('format')!r} export, not an ONNX one. Export "
                "with: transferkit export MODEL --format onnx"
            )
        ort = require("onnxruntime", "The ONNX runtime")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        self.session = ort.InferenceSession(
            os.fspath(folder / contract["model_file"]), options, providers=["CPUExecutionProvider"]
        )
        self.contract = contract
        self.task = contract["task"]
        self.class_names = list(read_json(folder / "labels.json"))
        self.target = contract.get("target", "single-label")
        self.thresholds = contract.get("thresholds")
        export = read_json(folder / "export.json")
        self.facts = dict(export.get("facts", {}))
        card = folder / "MODEL_CARD.md"
        self.card = card.read_text(encoding="utf-8") if card.is_file() else ""
        if self.task == "image":
            image = contract["image"]
            self.image_size = (int(image["height"]), int(image["width"]))
            self.resize_policy = image["resize"]
            self._input = contract["inputs"][0]["name"]
        else:
            tokenizers = require("tokenizers", "Tokenizing text for ONNX Runtime")
            self.tokenizer = tokenizers.Tokenizer.from_file(
                os.fspath(folder / contract["text"]["tokenizer"])
            )
            self._fields = contract["text"]["inputs"]  # model input name -> encoding field

    #: The `.keras` model this export was made from, when it was served from it
    #: (`load_predictor`); it explains the answers. None for an export folder served alone.
    keras_source = None

    def explainer(self):
        if self.keras_source is None:
            return None
        if getattr(self, "_explainer", None) is None:
            from transferkit.tasks.base import load

            self._explainer = load(self.keras_source)
        return self._explainer

    def predict(self, items: list) -> np.ndarray:
        if self.task == "image":
            batch = np.stack([np.asarray(item, dtype=np.uint8) for item in items])
            return np.asarray(self.session.run(None, {self._input: batch})[0], dtype=np.float32)
        return np.asarray(self.session.run(None, self.encode(items))[0], dtype=np.float32)

    def encode(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Token ids of `texts`, as the model's inputs."""
        from transferkit.export.tokenizer_json import encode

        return encode(self.tokenizer, self._fields, texts)


def load_predictor(model, runtime: str | None = None, **options) -> Predictor:
    """A `Predictor` for `model`: a `.keras` file or run folder, an export folder, an MLflow URI
    or a `transferkit.model_ref.ModelRef` (resolved once, here; see `ModelRef`).

    Runtimes: `"onnx"` serves an export folder, the run's own up-to-date `export/onnx`, or else an
    ONNX export made once into the transferkit cache (`serving/<sha256>/onnx`, verified on ONNX
    Runtime like every export); `"keras"` serves the `.keras` file; `"auto"` (default, also for
    `None`) is `"onnx"` for export folders and image models (2-3x faster, see
    `benchmarks/serve_load.py`) and `"keras"` for text models, or wherever the export fails.
    """
    from transferkit.model_ref import ModelRef

    runtime = "auto" if runtime is None else runtime
    if runtime not in RUNTIMES:
        raise InputError(f"Unknown runtime {runtime!r}. Choose one of: {', '.join(RUNTIMES)}.")
    ref = ModelRef.resolve(model)
    export = ref.export_folder
    if export is None and runtime != "keras":
        # The run's own, up-to-date ONNX export, or one made for serving.
        export = _onnx_export_of(ref) or _cached_onnx_export(ref, strict=runtime == "onnx")
    if runtime == "auto":
        runtime = "onnx" if export is not None else "keras"
    if runtime == "onnx":  # an export folder by now (`_cached_onnx_export` raised otherwise)
        predictor = OnnxPredictor(export, **options)
        if ref.export_folder is None:  # the .keras model behind it explains (`explainer`)
            predictor.keras_source = ref
        return predictor
    if ref.export_folder is not None:
        raise InputError(
            f"{ref.given}: is an export folder; serve it with `--runtime onnx`, or serve the "
            "`.keras` file with the keras runtime."
        )
    return KerasPredictor(ref)


def _cached_onnx_export(ref, strict: bool) -> Path | None:
    """An ONNX export of the model `ref` for serving, in the transferkit cache under the model
    file's sha256 (made on first use; `transferkit.export.export` verifies it). Without
    `strict`, only for image models, and `None` where the export fails or misses 1e-4."""
    import logging

    from transferkit.export import export
    from transferkit.files import cache_dir

    folder = cache_dir("serving", ref.sha256) / "onnx"
    if not (folder / "export.json").is_file():
        if not strict and _task_of(ref) != "image":
            return None  # text: ONNX Runtime is not faster for MiniLM (benchmarks/feature_speed.py)
        try:
            export(ref, folder, format="onnx", samples=32, overwrite=True)
        except Exception as exc:
            if strict:
                raise
            logging.getLogger("transferkit").warning(
                "Serving with Keras: the ONNX export failed (%s: %s).", type(exc).__name__, exc)
            return None
    verified = read_json(folder / "export.json").get("verified") or {}
    if not strict and (verified.get("warning") or "max_abs_diff" not in verified):
        return None  # differs from Keras by more than 1e-4: Keras serves
    return folder


def _task_of(ref) -> str | None:
    """The model's task, or `None` for a file that is not a whole transferkit classifier (then
    loading it says what it is)."""
    try:
        return ref.task
    except InputError:
        return None


def _onnx_export_of(ref) -> Path | None:
    """The unquantized ONNX export `transferkit export` wrote beside the model by default, if
    there is one and the model has not changed since."""
    from transferkit.export.destination import default_destination

    if ref.keras_file is None or not ref.keras_file.is_file():
        return None
    folder = default_destination(ref.keras_file, "onnx", "none")
    if not (folder / "export.json").is_file():
        return None
    source = (read_json(folder / "export.json").get("source") or {})
    return folder if source.get("sha256") == ref.sha256 else None
