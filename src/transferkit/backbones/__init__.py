"""Pretrained image backbones: the registry and its families."""

from transferkit.backbones.preprocessing import ImagePreprocessing, Preprocessing
from transferkit.backbones.registry import (
    BackboneSpec,
    backbone_table,
    get_backbone,
    get_spec,
    list_backbones,
    offline_backbones,
    register,
)

__all__ = [
    "BackboneSpec",
    "ImagePreprocessing",
    "Preprocessing",
    "backbone_table",
    "get_backbone",
    "get_spec",
    "list_backbones",
    "offline_backbones",
    "register",
]
