"""Benchmark: the same pretrained weights through the three backbone sources, on cats_and_dogs.

The issue "Backbones from every source" asks that EfficientNet-Lite0 exported as a SavedModel
folder and used as `--backbone FOLDER` train a head to the same validation accuracy (within 0.3
points) as `--backbone efficientnet_lite0`, and that a KerasHub preset folder train end to end.
Rows, each `train_images` on the shared cats_and_dogs photos (2000 train / 1000 validation, no
augmentation, seed 0) in a fresh feature cache:

- `registered`: `--backbone efficientnet_lite0` (the packaged weights);
- `SavedModel`: those weights exported TF Hub style (`model.export`: pixels in [0, 1] in, pooled
  1280 features out) and passed as a folder, default `--input-range 0,1`;
- `KerasHub (timm folder)`: the same weights written as a Hugging Face timm folder
  (`timm_efficientnet_lite0.py`) that KerasHub loads as its EfficientNetBackbone; KerasHub pads
  stride-2 convolutions symmetrically where the weights were trained with TensorFlow's SAME
  padding, so its features differ a little at 224 px (exact at 225);
- the KerasHub folder again with one fine-tuning epoch (end to end).

Usage::

    python benchmarks/backbone_sources.py [--fine-tune-epochs 1] [--json results.json]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from export_parity import SHARED, report_rows  # noqa: E402


def export_saved_model(folder: Path, size: int = 224) -> Path:
    """EfficientNet-Lite0 as a TF Hub-style feature vector: [0, 1] pixels in, pooled features."""
    import keras

    from transferkit.backbones.registry import get_backbone

    pixels = keras.Input((size, size, 3))
    base = get_backbone("efficientnet_lite0", input_shape=(size, size, 3))
    features = keras.layers.GlobalAveragePooling2D()(base(keras.layers.Rescaling(255.0)(pixels)))
    keras.Model(pixels, features).export(str(folder), format="tf_saved_model", verbose=False)
    return folder


def run(data: Path, backbone: str, fine_tune_epochs: int, output: Path) -> dict:
    from transferkit.pipelines.images import train_images

    started = time.perf_counter()
    result = train_images(data, backbone=backbone, output=output, fine_tune_epochs=fine_tune_epochs,
                          augment="none", verbose=0, log=lambda line: None)
    return {
        "head accuracy": round(result["head_validation_accuracy"], 4),
        "fine-tune accuracy": (None if result.get("fine_tune_validation_accuracy") is None
                               else round(result["fine_tune_validation_accuracy"], 4)),
        "feature s": result["feature_seconds"],
        "feature runtime": result["feature_runtime"],
        "wall s": round(time.perf_counter() - started, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fine-tune-epochs", type=int, default=1,
                        help="epochs of the last row (KerasHub, end to end); 0 skips the row")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    data = SHARED / "cats_and_dogs"
    if not data.is_dir():
        print(f"needs the shared data at {data}", file=sys.stderr)
        return 1
    sys.path.insert(0, str(Path(__file__).parent))
    from timm_efficientnet_lite0 import write_timm_efficientnet_lite0

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["TRANSFERKIT_CACHE_DIR"] = str(tmp / "cache")
        sources = [
            ("registered", "efficientnet_lite0", 0),
            ("SavedModel", str(export_saved_model(tmp / "lite0_saved_model")), 0),
            ("KerasHub (timm folder)", str(write_timm_efficientnet_lite0(tmp / "lite0_timm")), 0),
        ]
        if args.fine_tune_epochs:
            sources.append(("KerasHub, fine-tuned", sources[2][1], args.fine_tune_epochs))
        for i, (kind, backbone, epochs) in enumerate(sources):
            row = {"source": kind, **run(data, backbone, epochs, tmp / f"run{i}")}
            rows.append(row)
            print(row, flush=True)
    base = rows[0]["head accuracy"]
    for row in rows:
        row["vs registered (points)"] = round(100 * (row["head accuracy"] - base), 2)
    report_rows("EfficientNet-Lite0 weights from three sources, cats_and_dogs", rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
