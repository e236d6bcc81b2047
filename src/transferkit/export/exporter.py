"""`export`: a trained classifier to a folder a deployment can use without transferkit.

The folder holds the model file (`saved_model/`, `model.onnx` or `model.tflite`), `labels.json`
(class names in output order), `input.json` (the input contract: image size, dtype and value
range, or the tokenizer and its outputs), `tokenizer.json` for text in ONNX and LiteRT,
`MODEL_CARD.md`, and `export.json` (how it was made and how it was verified). Every export is run
on its real runtime against the Keras model before the folder appears; the folder is written
beside its destination and renamed into place, so a failed export leaves nothing behind
(`transferkit.export.destination`: which folders an export may replace, and its lock). The
settings and the destination are checked before the model is loaded.
"""

from __future__ import annotations

import datetime as _dt
import numbers
import os
from pathlib import Path

import numpy as np

import transferkit
from transferkit.errors import InputError
from transferkit.export import formats
from transferkit.export.card import model_card, model_facts, shown_path
from transferkit.export.destination import check_destination, default_destination, writing
from transferkit.export.graphs import image_graph, token_graph, token_inputs
from transferkit.export.samples import sample_inputs
from transferkit.extras import require
from transferkit.files import write_json

__all__ = ["export"]

_VERIFY_MAX = 64  # inputs run on the exported model to compare with Keras
_FLOAT_TOLERANCE = 1e-4  # largest score difference of an unquantized export
_AGREEMENT = 0.98  # smallest top-1 agreement of a quantized one


def _check_settings(format: str, quantize: str, samples: int) -> None:
    """The checks that need no model: before it is loaded."""
    if format not in formats.FORMATS:
        raise InputError(f"Unknown export format {format!r}. Choose one of: "
                         f"{', '.join(formats.FORMATS)}.")
    if quantize not in formats.QUANTIZATIONS:
        raise InputError(f"Unknown quantization {quantize!r}. Choose one of: "
                         f"{', '.join(formats.QUANTIZATIONS)}.")
    if format == "saved_model" and quantize != "none":
        raise InputError(
            f"A SavedModel is exported in float32 only; quantize={quantize!r} applies to "
            "--format onnx or --format litert."
        )
    if isinstance(samples, bool) or not isinstance(samples, numbers.Integral) or samples < 1:
        raise InputError("`samples` must be a positive int: how many inputs to calibrate and "
                         f"verify the export on. Received: samples={samples!r}.")


def _check(classifier, format: str, quantize: str) -> None:
    if format == "onnx":
        require("tf2onnx", "ONNX export")
        require("onnxruntime", "Verifying an ONNX export")
    if format == "onnx" and quantize == "float16" and classifier.task == "image":
        require("onnxconverter_common", "ONNX float16 export")
    if format == "litert":
        require("ai_edge_litert", "Verifying a LiteRT export")
    if classifier.task == "text" and format != "saved_model":
        require("tokenizers", "Writing tokenizer.json")
        if format == "onnx" and quantize == "float16":
            raise InputError(
                "ONNX float16 is for image models: onnxconverter-common's float16 pass breaks "
                "text graphs (their int-to-float casts, masks and loops). For a smaller text "
                "model use --quantize dynamic or int8, or --format litert --quantize float16."
            )
        kind = classifier.metadata.get("encoder", {}).get("kind")
        _check_text_quantization(kind, format, quantize)
        if format == "litert" and kind == "glove-bilstm":
            raise InputError(
                "A glove-bilstm text model cannot be exported to LiteRT: its BiLSTM converts "
                "only with TensorFlow's Flex ops (tf.TensorListReserve), which the LiteRT "
                "runtime (ai-edge-litert) does not run. Export it with --format onnx or "
                "saved_model, or train with a sentence encoder (--encoder minilm) for LiteRT."
            )


def _check_text_quantization(kind: str | None, format: str, quantize: str) -> None:
    """Refuses the text exports that were measured to crash or to answer one class
    (benchmarks/export_parity.py, MiniLM and GloVe + BiLSTM on rt_polarity)."""
    if format == "litert" and quantize in ("dynamic", "int8") and kind != "glove-bilstm":
        raise InputError(
            f"LiteRT {quantize} quantization breaks sentence-encoder text models: the quantized "
            "division in their pooling and head rounds its divisor to zero (measured: the "
            "LiteRT runtime aborts, or every sentence gets one class). Use --quantize float16 "
            "(half the size, same answers), or --format onnx --quantize dynamic."
        )
    if format == "onnx" and quantize == "int8" and kind == "glove-bilstm":
        raise InputError(
            "ONNX int8 quantization of a glove-bilstm model makes ONNX Runtime abort when it "
            "loads the quantized BiLSTM (an assertion in its graph optimizer). Use --quantize "
            "dynamic: int8 weights, 28% of the float size, 99.5% the same answers (measured)."
        )


def export(model, path: str | os.PathLike | None = None, *, format: str = "onnx",
           quantize: str = "none", calibration=None, samples: int = 200,
           overwrite: bool = False) -> dict:
    """Exports a trained classifier, verified on the format's real runtime.

    Args:
        model: an `ImageClassifier`/`TextClassifier`, a `.keras` file, a run folder, an MLflow
            URI or a `transferkit.model_ref.ModelRef`.
        path: the folder to write. Default `None`: `export/<format>[-<quantize>]` in the model's
            run folder.
        format: `"saved_model"`, `"onnx"` (default) or `"litert"`.
        quantize: `"none"` (default), `"float16"`, `"dynamic"` (int8 weights) or `"int8"`
            (full-integer, calibrated on `calibration`).
        calibration: inputs to calibrate `int8` and to verify on: an image folder, a table of
            texts, or a list of image paths or texts. Default `None`: a sample of the run's
            training data (`report/data.json`), when the model is in a run folder.
        samples: how many calibration inputs to draw (a positive int). Default 200.
        overwrite: replace an earlier export at `path` (a folder with `export.json`; never any
            other folder). Default False.

    Returns:
        `export.json`'s content plus `path` (the folder).

    Raises:
        InputError: a bad format, quantization or `samples`, a combination that cannot work
            (the message says which does), a `path` that is a file, holds a model or a run, is
            not an export, cannot be written or is being written by another export, or `int8`
            without calibration inputs.
        MissingDependencyError: the converter or runtime is not installed (with the pip line).
    """
    from transferkit.model_ref import ModelRef
    from transferkit.tracking.store import is_model_uri

    _check_settings(format, quantize, samples)
    if (is_model_uri(model) or getattr(model, "kind", None) == "mlflow") and path is None:
        raise InputError(f"{model}: a model from MLflow has no run folder to export into; pass "
                         "`path`, the folder to write.")
    from_file = isinstance(model, (str, os.PathLike))  # a ModelRef is path-like too
    if not from_file and getattr(model, "model", None) is None:
        raise InputError("The classifier is not trained yet: call `fit` before `export`.")
    if from_file:
        ref = ModelRef.resolve(model)
        model_path = ref.model_path
    else:  # a classifier: the file it was saved to or loaded from, if any
        model_path = getattr(model, "path", None)
        ref = None if model_path is None else ModelRef.resolve(model_path)
    output = Path(path) if path is not None else default_destination(model_path, format, quantize)
    folder = output.resolve()
    check_destination(folder, model_path, overwrite)
    if from_file:
        model = transferkit.load(ref)
    _check(model, format, quantize)
    items, described = sample_inputs(model, calibration, model_path, samples)
    if quantize == "int8" and items is None:
        raise InputError(
            "int8 quantization is calibrated on real inputs, and none were found: pass "
            "`calibration` (--calibration DATA: an image folder or a table of texts)."
        )
    with writing(folder, model_path, overwrite) as partial:
        record = _write_folder(model, partial, format, quantize, items, described, ref)
    return {**record, "path": os.fspath(output)}


def _write_folder(classifier, folder: Path, format, quantize, items, described, ref):
    graph = image_graph(classifier) if classifier.task == "image" else token_graph(classifier)
    model_name = formats.MODEL_FILES[format]
    contract = _contract(classifier, graph, format, quantize, model_name)
    if "text" in contract:
        from transferkit.export.tokenizer_json import write_tokenizer_json

        write_tokenizer_json(classifier.model.get_layer("tokenize"), folder / "tokenizer.json")
    examples, reference = _examples(classifier, items)
    calibration = None
    if quantize == "int8":
        calibration = _one_by_one(_keras_inputs(classifier, examples))
    formats.write(format, graph, folder / model_name, quantize, calibration,
                  classifier=classifier)
    verified = _verify(classifier, folder, format, contract, examples, reference)
    facts = model_facts(classifier, ref)
    record = {
        "format": format,
        "quantize": quantize,
        "model_file": model_name,
        "size_bytes": _size(folder / model_name),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "source": None if ref is None else {  # the run folder's name, not the machine's
            "path": shown_path(ref.model_path, parts=2), "sha256": ref.sha256},
        "calibration": described if quantize == "int8" else None,
        "verified": verified,
        "facts": facts,
    }
    write_json(folder / "labels.json", list(classifier.class_names))
    write_json(folder / "input.json", contract)
    write_json(folder / "export.json", record)
    (folder / "MODEL_CARD.md").write_text(model_card(facts, record), encoding="utf-8")
    return record


def _contract(classifier, graph, format, quantize, model_name) -> dict:
    """`input.json`: what the exported model takes and gives."""
    classes = len(classifier.class_names)
    contract: dict = {"task": classifier.task, "format": format, "quantize": quantize,
                      "model_file": model_name}
    output = {"shape": [None, classes], "meaning": {
        "single-label": "class probabilities, columns in labels.json order",
        "multi-label": "a probability per label (sigmoid), columns in labels.json order; a "
                       "label is predicted at or above its `thresholds` entry",
        "regression": "the predicted value, in the target's units",
    }[classifier.target]}
    contract["target"] = classifier.target
    if classifier.target == "multi-label":
        contract["thresholds"] = [float(t) for t in classifier.thresholds]
    if classifier.task == "image":
        height, width = classifier.input_size
        contract["image"] = {
            "height": height, "width": width, "channels": "RGB", "dtype": "uint8",
            "value_range": [0, 255], "resize": classifier.resize_policy,
            "resize_note": "resize outside the model: transferkit.data.images.load_resized "
                           "(Pillow, bicubic; center_crop keeps the aspect ratio)",
        }
        contract["inputs"] = [{"name": "image", "dtype": "uint8",
                               "shape": [None, height, width, 3]}]
        if format == "saved_model":
            contract["signatures"] = {
                "serve": "uint8 images (batch, height, width, 3)",
                "serve_bytes": "encoded JPEG/PNG/GIF/BMP bytes (batch,); decoded and resized "
                               "inside (TensorFlow's decoders: EXIF orientation not applied)",
            }
    elif format == "saved_model":
        contract["inputs"] = [{"name": "text", "dtype": "string", "shape": [None]}]
        contract["signatures"] = {"serve": "strings (batch,); tokenized inside"}
    else:
        from transferkit.export.tokenizer_json import tokenizer_fields

        tokenize = classifier.model.get_layer("tokenize")
        length = int(tokenize.sequence_length)
        contract["inputs"] = [{"name": name, "dtype": "int32", "shape": [None, length]}
                              for name in tokenize.names]
        contract["text"] = {"tokenizer": "tokenizer.json", "sequence_length": length,
                            "inputs": tokenizer_fields(tokenize)}
    contract["output"] = output
    return contract


def _examples(classifier, items):
    """Inputs to verify on and the Keras model's probabilities for them."""
    if items is None:  # nothing from the run: made-up inputs still check the graph
        rng = np.random.default_rng(0)
        if classifier.task == "image":
            height, width = classifier.input_size
            items = list(rng.integers(0, 256, (8, height, width, 3), dtype=np.uint8))
        else:
            items = ["", "a", *classifier.class_names, "this is a short test sentence ."]
    examples = list(items)
    if classifier.task == "image":
        from transferkit.data.images import load_resized

        examples = [item if isinstance(item, np.ndarray) else
                    load_resized(item, classifier.input_size, classifier.resize_policy)
                    for item in items]
    reference = classifier.predict_proba(examples)
    return examples, np.asarray(reference, dtype=np.float64)


def _keras_inputs(classifier, examples) -> dict[str, np.ndarray]:
    if classifier.task == "image":
        return {"image": np.stack(examples).astype(np.uint8)}
    return token_inputs(classifier, examples)


def _one_by_one(inputs: dict[str, np.ndarray]) -> list[dict]:
    count = len(next(iter(inputs.values())))
    return [{k: v[i:i + 1] for k, v in inputs.items()} for i in range(count)]


def _verify(classifier, folder, format, contract, examples, reference) -> dict:
    """Runs the written model on its runtime and compares it with the Keras model."""
    run, runtime = formats.runner(format, folder / contract["model_file"])
    count = min(len(examples), _VERIFY_MAX)
    examples, reference = examples[:count], reference[:count]
    if classifier.task == "image":
        inputs = {"image": np.stack(examples).astype(np.uint8)}
    elif format == "saved_model":
        inputs = {"text": np.asarray([str(t) for t in examples], dtype=object)}
    else:
        from tokenizers import Tokenizer

        from transferkit.export.tokenizer_json import encode

        tokenizer = Tokenizer.from_file(os.fspath(folder / "tokenizer.json"))
        inputs = encode(tokenizer, contract["text"]["inputs"], examples)
    scores = np.concatenate([run({k: v[i:i + 16] for k, v in inputs.items()})
                             for i in range(0, count, 16)])
    verified = {
        "runtime": runtime,
        "inputs": int(count),
        "max_abs_diff": float(np.abs(scores - reference).max()),
        "top1_agreement": float((scores.argmax(1) == reference.argmax(1)).mean()),
        "tokenizer": "tokenizer.json (Hugging Face tokenizers)" if "text" in contract else None,
        "warning": None,
    }
    quantize = contract["quantize"]
    if quantize == "none" and verified["max_abs_diff"] > _FLOAT_TOLERANCE:
        verified["warning"] = (
            f"scores differ from the Keras model's by up to {verified['max_abs_diff']:.2g} "
            f"(more than {_FLOAT_TOLERANCE:g}); check the export before using it")
    elif quantize != "none" and verified["top1_agreement"] < _AGREEMENT:
        verified["warning"] = (
            f"{quantize} changes the top class of {1 - verified['top1_agreement']:.0%} of "
            f"{count} verification inputs (the bar is {1 - _AGREEMENT:.0%}); try --quantize "
            "dynamic or float16, or keep it unquantized")
    return verified


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size
