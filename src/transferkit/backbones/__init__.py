"""Pretrained backbones and text encoders: the registries and their families."""

from transferkit.backbones.preprocessing import Preprocessing
from transferkit.backbones.registry import (
    BackboneSpec,
    Registry,
    backbone_table,
    get_backbone,
    get_spec,
    list_backbones,
    offline_backbones,
    register,
)

__all__ = [
    "BackboneSpec",
    "Preprocessing",
    "Registry",
    "backbone_table",
    "get_backbone",
    "get_spec",
    "list_backbones",
    "offline_backbones",
    "register",
]
