"""Finding, converting and caching pretrained weights; every cached file is hash-checked."""

from transferkit.weights.cache import (
    CACHE_DIR_ENV,
    atomic_path,
    atomic_write_bytes,
    cache_dir,
    cached,
    invalidate,
    is_valid,
    record_hash,
    recorded_hash,
    sha256_bytes,
    sha256_file,
)
from transferkit.weights.torch_checkpoint import ALLOWED_GLOBALS, load_state_dict

__all__ = [
    "ALLOWED_GLOBALS",
    "CACHE_DIR_ENV",
    "atomic_path",
    "atomic_write_bytes",
    "cache_dir",
    "cached",
    "invalidate",
    "is_valid",
    "load_state_dict",
    "record_hash",
    "recorded_hash",
    "sha256_bytes",
    "sha256_file",
]
