"""Optional dependencies: import one, or fail with the exact line that installs it.

transferkit's core trains and predicts with Keras alone. Exporting, serving and the runtimes that
verify exports are extras (`pyproject.toml`), pinned to the versions tested together; importing
one that is missing raises `MissingDependencyError` naming both the extra and the package.
"""

from __future__ import annotations

import importlib
import importlib.util

from transferkit.errors import MissingDependencyError

__all__ = ["require", "require_installed", "PACKAGES"]

# import name -> (pip requirement, transferkit extra). Versions match pyproject.toml.
PACKAGES = {
    "onnx": ("onnx==1.23.2", None),  # core dependencies: missing only from a broken install
    "onnxruntime": ("onnxruntime==1.32.0", None),
    "tf2onnx": ("tf2onnx==1.17.0", None),
    "ai_edge_litert": ("ai-edge-litert==2.3.0", "export"),
    "onnxconverter_common": ("onnxconverter-common==1.16.0", "export"),
    "tokenizers": ("tokenizers==0.23.3", None),  # required by keras-hub
    "keras_hub": ("keras-hub==0.32.*", None),
    "fastapi": ("fastapi==0.165.0", "serve"),
    "uvicorn": ("uvicorn==0.54.0", "serve"),
    "python_multipart": ("python-multipart==0.0.34", "serve"),
    "mlflow": ("mlflow==3.17.2", "tracking"),
    "ray": ("ray[data]==2.60.0", "scale"),
    "jax": ("jax==0.10.2", "scale"),
    "optuna": ("optuna==5.1.0", "tune"),
}


def require(module: str, purpose: str):
    """Imports `module` (a key of `PACKAGES`), or raises `MissingDependencyError` with the
    `pip install` line; `purpose` says what needs it ("ONNX export")."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise _missing(module, purpose) from None


def require_installed(module: str, purpose: str) -> None:
    """Raises what `require` would if `module` is not installed, without importing it (for a
    check before work starts, when importing would cost seconds)."""
    if importlib.util.find_spec(module) is None:
        raise _missing(module, purpose)


def _missing(module: str, purpose: str) -> MissingDependencyError:
    requirement, extra = PACKAGES[module]
    how = (f"pip install 'transferkit[{extra}]' (or: pip install '{requirement}')" if extra
           else f"pip install '{requirement}' (a dependency of transferkit)")
    return MissingDependencyError(
        f"{purpose} needs {requirement.split('==')[0]}, which is not installed. Install it "
        f"with: {how}"
    )
