"""The image part of `transferkit demo`: faces versus non-faces, offline, in about a minute.

The data is scikit-image's `lfw_subset` (bundled with the package, no download): 200 grayscale
25x25 crops, the first 100 faces from Labeled Faces in the Wild and the last 100 random patches of
non-face images. They are written as PNG files in class sub-folders, exactly as a user's data
would be, and `train_images` runs the whole pipeline on them: cached features, head, fine-tuning,
report. `DEMO_OPTIONS` are settings of `ImageTrainConfig`.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["write_lfw_subset", "run", "DEMO_OPTIONS"]

# Small inputs keep the demo to about a minute on two cores; the 25-pixel crops have no more
# detail to show at 224 anyway.
DEMO_OPTIONS = {
    "backbone": "efficientnet_lite0",
    "image_size": 96,
    "epochs": 30,
    "fine_tune_epochs": 3,
    "unfreeze": "block6a_expand_conv",
    "fine_tune_learning_rate": 1e-4,
    "augment": "flip,rotate,zoom",
    "augment_views": 2,
    "seed": 0,
}


def write_lfw_subset(folder: str | os.PathLike) -> Path:
    """Writes skimage's `lfw_subset` as `folder/face/*.png` and `folder/not_face/*.png`."""
    import numpy as np
    import skimage.data
    from PIL import Image

    folder = Path(folder)
    images = skimage.data.lfw_subset()  # (200, 25, 25) floats in [0, 1]
    for index, image in enumerate(images):
        label = "face" if index < 100 else "not_face"
        path = folder / label / f"{label}_{index:03d}.png"
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(path)
    return folder


def run(output_dir: str | os.PathLike, log=print, track=None) -> dict:
    """Trains the face / non-face classifier and writes its run folder under `output_dir`;
    `track` logs it to MLflow (see `train_images`; default `None`: not tracked).

    Returns:
        The results of `train_images` (accuracies, `model_path`, `report_dir`, `seconds`, ...).
    """
    from transferkit.pipelines.images import train_images
    from transferkit.run_folder import RunFolder

    output_dir = Path(output_dir)
    data = write_lfw_subset(output_dir / "lfw_faces")
    log(
        f"Faces vs non-faces: 200 real images from scikit-image's lfw_subset, written to {data}"
    )
    run_dir = output_dir / "run"
    if RunFolder(run_dir).is_run():
        import shutil

        shutil.rmtree(run_dir)  # a fresh run each time the demo is asked for
    result = train_images(data, output=run_dir, verbose=0, log=log, track=track, **DEMO_OPTIONS)
    summary = result.pop("summary", "")
    log("")
    log(summary.rstrip())
    log(f"\nModel:  {result['model_path']}")
    log(f"Report: {result['report_dir']}  (curves.png, confusion_matrix.png, mistakes.png, ...)")
    log(f"Try:    transferkit predict {result['model_path']} {data}/face/face_000.png")
    return result
