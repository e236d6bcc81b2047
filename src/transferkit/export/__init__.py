"""Export trained classifiers to SavedModel, ONNX and LiteRT, verified on their real runtimes.

`export` (in `transferkit.export.exporter`) is imported on first use, so that the command line
can list the formats without loading Keras.
"""

FORMATS = ("saved_model", "onnx", "litert")
QUANTIZATIONS = ("none", "float16", "dynamic", "int8")

__all__ = ["export", "FORMATS", "QUANTIZATIONS"]


def __getattr__(name):
    if name == "export":
        from transferkit.export.exporter import export

        return export
    raise AttributeError(f"module 'transferkit.export' has no attribute {name!r}")
