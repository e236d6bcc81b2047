"""Time `transferkit predict-imagenet` on 10 real images, cold (a new process) and warm (in process).

Run: .venv/bin/python benchmarks/predict_imagenet.py [--runs 3]
Images: 5 cats + 5 dogs from ../shared/data/cats_and_dogs/validation (falls back to scikit-image's
bundled photos, repeated, when the shared data is absent).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "cats_and_dogs" / "validation"


def ten_images() -> list[str]:
    if SHARED.is_dir():
        cats = sorted((SHARED / "cats").glob("*.jpg"))[:5]
        dogs = sorted((SHARED / "dogs").glob("*.jpg"))[:5]
        return [str(p) for p in cats + dogs]
    from transferkit.demos.photos import sample_photos

    photos = sample_photos(Path(tempfile.mkdtemp()) / "photos")
    return [str(photos[i % len(photos)]) for i in range(10)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    args = parser.parse_args()
    images = ten_images()
    command = [sys.executable, "-m", "transferkit.cli", "predict-imagenet", *images,
               "--backbone", args.backbone, "--json"]
    cold = []
    for _ in range(args.runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        cold.append(time.perf_counter() - started)

    from transferkit.imagenet import predict_imagenet

    predict_imagenet(images[:1], backbone=args.backbone)  # build + load weights once
    warm = []
    for _ in range(args.runs):
        started = time.perf_counter()
        predict_imagenet(images, backbone=args.backbone)
        warm.append(time.perf_counter() - started)

    print(f"| what ({args.backbone}, 10 images) | median s | min s | runs |")
    print("|---|---|---|---|")
    print(f"| CLI, new process (import, build, weights, decode, predict) | {statistics.median(cold):.2f} | {min(cold):.2f} | {args.runs} |")
    print(f"| predict_imagenet() in process, model rebuilt each call | {statistics.median(warm):.2f} | {min(warm):.2f} | {args.runs} |")


if __name__ == "__main__":
    main()
