"""Benchmark: the head on cached features with few training images per class.

The issue "Know your data and your model" asks for head accuracy with 5, 10 and 20 training
images per class (seeded samples of the shared cats_and_dogs training photos, the full 1000-photo
validation set), with the defaults: the head must reach its best without divergence or
empty-class errors, and the label check must adapt its folds. Each row is one default
`train_images` run, head only (symlinked sample), and reads the run's result and history.

Usage::

    python benchmarks/few_shot.py [--sizes 5 10 20] [--seeds 0 1 2] [--json results.json]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from export_parity import SHARED, report_rows  # noqa: E402


def sample_folder(source: Path, target: Path, per_class: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    for class_dir in sorted((source / "train").iterdir()):
        files = sorted(p for p in class_dir.iterdir() if p.is_file())
        for i in sorted(rng.choice(len(files), size=per_class, replace=False)):
            link = target / "train" / class_dir.name / files[i].name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(files[i])
    (target / "validation").symlink_to(source / "validation")
    return target


def main() -> int:
    import pandas as pd

    from transferkit.pipelines.images import train_images

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            accuracies, epochs, label_lines, temperatures = [], [], [], []
            for seed in args.seeds:
                data = sample_folder(SHARED / "cats_and_dogs", Path(tmp) / f"{size}-{seed}",
                                     size, seed)
                result = train_images(data, output=Path(tmp) / f"run-{size}-{seed}",
                                      fine_tune_epochs=0, augment="none", seed=seed,
                                      verbose=0, log=lambda line: None)
                history = pd.read_csv(Path(result["run_dir"]) / "history.csv")
                accuracies.append(result["validation_accuracy"])
                epochs.append(len(history))
                label_lines.append(result["label_issues"])
                temperatures.append((result["calibration"] or {}).get("temperature"))
            rows.append({
                "train images a class": size, "seeds": len(args.seeds),
                "validation accuracy (mean)": round(float(np.mean(accuracies)), 4),
                "min": round(min(accuracies), 4), "max": round(max(accuracies), 4),
                "head epochs": "/".join(map(str, epochs)),
                "label issues flagged": "/".join(map(str, label_lines)),
                "temperature": "/".join(f"{t:.2f}" if t else "-" for t in temperatures),
            })
            print(rows[-1], flush=True)
    report_rows("Few-shot heads on cats_and_dogs (1000 validation photos)", rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
