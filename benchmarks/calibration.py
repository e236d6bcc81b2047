"""Benchmark: are the scores calibrated? Temperature scaling on the shared data.

The issue "Know your data and your model" sets targets after calibration: expected calibration
error (15 bins) <= 0.02 on cats_and_dogs validation (EfficientNet-Lite0, head on cached
features) and <= 0.03 on the rt_polarity test split (MiniLM frozen), never worse than before on
the test split. Each row is one default training run (`train_images`, `train_text`: the
temperature is fitted on the validation split, as every run does); ECE and NLL are read from
the run's `calibration` result, before (temperature 1) and after. cats_and_dogs has no test
split: its validation split is both where the temperature is fitted and what is reported.

Usage::

    python benchmarks/calibration.py [--json results.json]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from export_parity import SHARED, report_rows  # noqa: E402

TARGETS = {("cats_and_dogs", "validation"): 0.02, ("rt_polarity", "test"): 0.03}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    from transferkit.pipelines.images import train_images
    from transferkit.pipelines.text import train_text

    runs = {
        "cats_and_dogs": lambda out: train_images(
            SHARED / "cats_and_dogs", output=out, fine_tune_epochs=0, augment="none", verbose=0,
            log=lambda line: None),
        "rt_polarity": lambda out: train_text(
            SHARED / "rt_polarity" / "sentences.csv", encoder="minilm", output=out,
            fine_tune_epochs=0, verbose=0, log=lambda line: None),
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, train in runs.items():
            result = train(Path(tmp) / name)
            calibration = result["calibration"]
            for split in ("validation", "test"):
                numbers = calibration.get(split)
                if numbers is None:
                    continue
                target = TARGETS.get((name, split))
                rows.append({
                    "data": name, "split": split, "examples": numbers["examples"],
                    "temperature": calibration["temperature"],
                    "ECE before": numbers["ece_before"], "ECE after": numbers["ece_after"],
                    "NLL before": numbers["nll_before"], "NLL after": numbers["nll_after"],
                    "accuracy": round(result.get(f"{split}_accuracy") or float("nan"), 4)
                    if result.get("report_split") == split else "",
                    "target ECE": f"<= {target}" if target else "",
                })
                print(rows[-1], flush=True)
    report_rows("Calibration (temperature scaling on validation)", rows, args.json)
    return 0


if __name__ == "__main__":
    if not (SHARED / "cats_and_dogs").is_dir():
        print(f"needs the shared data at {SHARED}", file=sys.stderr)
        sys.exit(1)
    sys.exit(main())
