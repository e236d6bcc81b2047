"""Writing one model file per format, and running it on its real runtime to verify it.

Keras writes the float graphs (`keras.Model.export`: `onnx` through tf2onnx, `litert` through
TensorFlow's LiteRT converter); this module adds what Keras does not do: a SavedModel with a second
signature that takes encoded image bytes, quantisation as each runtime defines it (LiteRT's
converter options; ONNX Runtime's quantisation tools; onnxconverter-common for float16), and
running the result on `tensorflow`, `onnxruntime` or `ai-edge-litert`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from transferkit.export import FORMATS, QUANTIZATIONS
from transferkit.extras import require
from transferkit.runtimes import constant_normalization

__all__ = ["FORMATS", "QUANTIZATIONS", "MODEL_FILES", "write", "runner"]
MODEL_FILES = {"saved_model": "saved_model", "onnx": "model.onnx", "litert": "model.tflite"}


def write(format: str, graph, path: Path, quantize: str, calibration: list[dict] | None,
          *, classifier=None) -> None:
    """Writes `graph` (from `transferkit.export.graphs`) as `format` at `path`.

    Args:
        calibration: input batches (dicts of numpy arrays, one example each) for `int8`.
        classifier: for `saved_model`: the classifier (its full model and input size).
    """
    if format == "saved_model":
        _saved_model(classifier, graph, path)
    elif format == "onnx":
        _onnx(graph, path, quantize, calibration, text=classifier.task == "text")
    else:
        _litert(graph, path, quantize, calibration)


# -- SavedModel ---------------------------------------------------------------------------------

def _saved_model(classifier, graph, path: Path) -> None:
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    if classifier.task == "text":  # strings in: the saved model itself, tokenizer included
        model = classifier.model
        archive.track(model)
        archive.add_endpoint(
            "serve", lambda texts: model(texts, training=False),
            input_signature=[tf.TensorSpec((None,), tf.string, name="text")],
        )
    else:
        height, width = classifier.input_size
        archive.track(graph)
        archive.add_endpoint(
            "serve", lambda images: graph(images, training=False),
            input_signature=[tf.TensorSpec((None, height, width, 3), tf.uint8, name="image")],
        )
        decode = _bytes_decoder((height, width), classifier.resize_policy)
        archive.add_endpoint(
            "serve_bytes", lambda data: graph(decode(data), training=False),
            input_signature=[tf.TensorSpec((None,), tf.string, name="image_bytes")],
        )
    archive.write_out(os.fspath(path), verbose=False)


def _bytes_decoder(size: tuple[int, int], policy: str):
    """Encoded JPEG/PNG/GIF/BMP bytes -> uint8 `(batch, H, W, 3)`, resized as transferkit resizes
    (`transferkit.data.images.resize_image`: bicubic; `center_crop` fits the shorter side then
    crops the centre). EXIF orientation is not applied (TensorFlow's decoders ignore it)."""
    import tensorflow as tf

    height, width = size

    def one(data):
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        if policy == "stretch":
            return _resize(image, height, width)
        shape = tf.cast(tf.shape(image)[:2], tf.float32)
        scale = tf.maximum(height / shape[0], width / shape[1])
        new_h = tf.maximum(height, tf.cast(tf.round(shape[0] * scale), tf.int32))
        new_w = tf.maximum(width, tf.cast(tf.round(shape[1] * scale), tf.int32))
        resized = _resize(image, new_h, new_w)
        top, left = (new_h - height) // 2, (new_w - width) // 2
        return resized[top:top + height, left:left + width, :]

    def decode(batch):
        return tf.map_fn(one, batch, fn_output_signature=tf.TensorSpec((height, width, 3),
                                                                       tf.uint8))
    return decode


def _resize(image, height, width):
    import tensorflow as tf

    resized = tf.image.resize(image, (height, width), method="bicubic", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


# -- ONNX ---------------------------------------------------------------------------------------

def _onnx(graph, path: Path, quantize: str, calibration, text: bool) -> None:
    require("tf2onnx", "ONNX export")
    require("onnx", "ONNX export")
    with tempfile.TemporaryDirectory() as scratch:
        float_path = Path(scratch) / "float.onnx"
        with constant_normalization(graph):
            graph.export(os.fspath(float_path), format="onnx", verbose=False)
        if quantize == "none":
            shutil.copyfile(float_path, path)
        elif quantize == "float16":
            import onnx

            float16 = require("onnxconverter_common", "ONNX float16 export").float16
            model = onnx.load(float_path)
            inputs = {tensor.name for tensor in model.graph.input}
            # The cast of the uint8 input to float stays float32: the pass would retype its
            # output float16 and leave the node's `to` float32, which ONNX Runtime refuses.
            casts = [n.name for n in model.graph.node if n.op_type == "Cast" and n.input[0] in inputs]
            with warnings.catch_warnings():  # "will be truncated": what float16 means
                warnings.simplefilter("ignore", UserWarning)
                model = float16.convert_float_to_float16(model, keep_io_types=True,
                                                         node_block_list=casts)
            onnx.save(model, os.fspath(path))
        else:
            _onnx_quantize(float_path, path, quantize, calibration, Path(scratch),
                           text=text)


def _onnx_quantize(float_path: Path, path: Path, quantize: str, calibration, scratch: Path,
                   text: bool):
    require("onnxruntime", "ONNX quantization")
    from onnxruntime import quantization as q

    if quantize == "dynamic":  # int8 weights, activations quantized on the fly
        q.quantize_dynamic(os.fspath(float_path), os.fspath(path), weight_type=q.QuantType.QInt8)
        return
    prepared = scratch / "prepared.onnx"
    # ONNX shape inference and graph optimisation before quantising, as ONNX Runtime advises.
    # Its symbolic shape inference is skipped: it gives up on text graphs and then dumps its
    # state into the working folder.
    q.shape_inference.quant_pre_process(os.fspath(float_path), os.fspath(prepared),
                                        skip_symbolic_shape=True)

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self.batches = iter(calibration)

        def get_next(self):
            return next(self.batches, None)

    options = {}
    if text:
        # Measured on MiniLM + rt_polarity: quantising every op changed the top class of ~48% of
        # held-out sentences; the sentence features (pooling, L2 norm) and the standardising
        # head stay float, and only the weight-carrying MatMul and Gather (embedding) ops are
        # quantised, which keeps the file at ~26% of float (see benchmarks/export_parity.py).
        import onnx

        names = [node.name for node in onnx.load(prepared).graph.node]
        options["op_types_to_quantize"] = ["MatMul", "Gather"]
        options["nodes_to_exclude"] = [n for n in names if any(
            part in n for part in ("/head", "pooling", "normalize", "layer_features"))]
    q.quantize_static(
        os.fspath(prepared), os.fspath(path), Reader(), quant_format=q.QuantFormat.QDQ,
        activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8, per_channel=True,
        **options,
    )


# -- LiteRT -------------------------------------------------------------------------------------

def _litert(graph, path: Path, quantize: str, calibration) -> None:
    import tensorflow as tf

    options: dict = {"target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}}
    if quantize != "none":
        options["optimizations"] = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        options["target_spec"]["supported_types"] = [tf.float16]
    elif quantize == "int8":  # full-integer ops; uint8 images or int32 ids in, float scores out
        options["target_spec"]["supported_ops"] = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        options["representative_dataset"] = lambda: iter(calibration)
    with constant_normalization(graph), warnings.catch_warnings():
        # The converter calibrates int8 with TensorFlow's own deprecated interpreter; the
        # result is then verified with ai-edge-litert's.
        warnings.filterwarnings("ignore", message=r"\s*Warning: tf.lite.Interpreter is deprecated")
        graph.export(os.fspath(path), format="litert", verbose=False, **options)


# -- running an export on its runtime -----------------------------------------------------------

def runner(format: str, path: Path):
    """A function `inputs (dict of arrays) -> probabilities` running the file at `path` on its
    real runtime, and that runtime's name and version."""
    if format == "saved_model":
        import tensorflow as tf

        serve = tf.saved_model.load(os.fspath(path)).signatures["serve"]

        def run(inputs):
            outputs = serve(**{k: tf.constant(v) for k, v in inputs.items()})
            return np.asarray(next(iter(outputs.values())))
        return run, f"tensorflow {tf.__version__}"
    if format == "onnx":
        ort = require("onnxruntime", "Verifying an ONNX export")
        session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
        return (lambda inputs: np.asarray(session.run(None, inputs)[0])), (
            f"onnxruntime {ort.__version__}")
    litert = require("ai_edge_litert", "Verifying a LiteRT export")
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=os.fspath(path))
    signature = interpreter.get_signature_runner()

    def run(inputs):
        return np.asarray(next(iter(signature(**inputs).values())))
    return run, f"ai-edge-litert {getattr(litert, '__version__', '')}".strip()
