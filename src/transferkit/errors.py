"""The exceptions transferkit raises.

Every error subclasses `TransferkitError` and a builtin, so callers can catch either::

    TransferkitError
     +-- InputError(ValueError)                 bad arguments or bad data from the user
     |    +-- ImageReadError                   a file that is missing, a folder, or not an image
     |    +-- DataError                        a dataset that cannot be trained on as given
     +-- UnknownBackboneError(KeyError)         a backbone name that is not registered
     +-- WeightsError(RuntimeError)             weights that cannot be found, read or trusted
     |    +-- WeightsUnavailableError          weights that would need a download on an offline machine
     |    +-- UnsafeCheckpointError            a checkpoint that asks to run code we do not allow
     +-- MissingDependencyError(ImportError)    an optional package is not installed
     +-- RuntimeMismatchError(RuntimeError)     ONNX Runtime disagrees with Keras on a frozen model
     +-- TrackingError(RuntimeError)            an MLflow store or registry that refused or is away
     +-- DiskFullError(OSError)                 no space left on the device a file was written to

The command line catches `TransferkitError` once, prints its message on one line and exits non-zero.
"""

from __future__ import annotations

__all__ = [
    "TransferkitError",
    "InputError",
    "ImageReadError",
    "DataError",
    "UnknownBackboneError",
    "WeightsError",
    "WeightsUnavailableError",
    "UnsafeCheckpointError",
    "MissingDependencyError",
    "RuntimeMismatchError",
    "TrackingError",
    "DiskFullError",
]


class TransferkitError(Exception):
    """Base class of every error transferkit raises on purpose."""

    def __str__(self) -> str:  # KeyError quotes its message; keep ours readable.
        return str(self.args[0]) if self.args else ""


class InputError(TransferkitError, ValueError):
    """An argument or an input file is not what transferkit can use."""


class ImageReadError(InputError):
    """An image path is missing, is a folder, or does not decode as an image."""


class DataError(InputError):
    """A dataset (folder of images, table of texts) cannot be trained on as given."""


class UnknownBackboneError(TransferkitError, KeyError):
    """A backbone name that is not in the registry."""


class WeightsError(TransferkitError, RuntimeError):
    """Weights that cannot be found, read, or verified."""


class WeightsUnavailableError(WeightsError):
    """Weights that would have to be downloaded, on a machine that cannot download them."""


class UnsafeCheckpointError(WeightsError):
    """A checkpoint whose pickle asks for a global outside the allow-list."""


class MissingDependencyError(TransferkitError, ImportError):
    """An optional dependency is missing; the message gives the exact install line."""


class RuntimeMismatchError(TransferkitError, RuntimeError):
    """ONNX Runtime's output for a frozen model differs from Keras's by more than the tolerance
    (`transferkit.runtimes.TOLERANCE`)."""


class TrackingError(TransferkitError, RuntimeError):
    """An MLflow tracking store or model registry refused a request or could not be reached."""


class DiskFullError(TransferkitError, OSError):
    """A write failed for lack of space (ENOSPC, or a quota); the file it would have replaced is
    left as it was. `path` is the file that was being written."""

    def __init__(self, message: str, path: str = ""):
        super().__init__(message)
        self.path = path
