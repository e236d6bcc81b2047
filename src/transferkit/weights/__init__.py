"""Finding, converting and caching pretrained weights; every cached file is hash-checked."""

from transferkit.weights.cache import cached, invalidate, is_valid, record_hash, recorded_hash
from transferkit.weights.torch_checkpoint import ALLOWED_GLOBALS, load_state_dict

__all__ = [
    "ALLOWED_GLOBALS",
    "cached",
    "invalidate",
    "is_valid",
    "load_state_dict",
    "record_hash",
    "recorded_hash",
]
