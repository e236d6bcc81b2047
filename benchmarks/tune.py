"""Benchmark: `transferkit tune` (50 trials) against one default head run, on warm features.

Issue 31's bar: 50 trials finish in at most 3x the wall time of one default head run on warm
features, and the tuned head scores no worse than the default head on the final report's split.

Per dataset (under ../shared/data):

* cats_and_dogs (images, EfficientNet-Lite0; the report's split: validation, 1,000 photos);
* rt_polarity (text, sentences.csv, MiniLM frozen; the report's split: test, 2,132 sentences).

Steps: (1) a default head run (`fine_tune_epochs=0`) computes and caches the features (its time
is noted, not compared); (2) a one-trial `tune` in a scratch folder caches what tuning reads that
training does not (text: the `sentence` kind); (3) the default head run again, timed: the
baseline; (4) `tune` with `--trials` (50) in a fresh folder, timed; (5) a head run with the
search's `best.toml` (`fine_tune_epochs=0`). Both scores are on the report's split, which the
trials never see (they are scored on 20% of the training images, or on the validation texts).

Usage::

    python benchmarks/tune.py [--only cats_and_dogs,rt_polarity] [--trials 50] [--jobs 1]
        [--data ../shared/data] [--output FOLDER] [--json results.json]

Progress goes to stderr; the markdown table to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

DATASETS = {
    "cats_and_dogs": ("images", "cats_and_dogs", {}),
    "rt_polarity": ("text", "rt_polarity/sentences.csv", {"encoder": "minilm"}),
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def quiet(message: str) -> None:
    pass


def head_run(kind: str, data: Path, output: Path, **settings) -> tuple[float, float]:
    """`(seconds, score on the report's split)` of one head-only training run."""
    if kind == "images":
        from transferkit.pipelines.images import train_images as train
    else:
        from transferkit.pipelines.text import train_text as train
    started = time.perf_counter()
    result = train(data, output=output, verbose=0, log=quiet, fine_tune_epochs=0, **settings)
    seconds = time.perf_counter() - started
    return seconds, result["validation_accuracy"] if kind == "images" else result["test_accuracy"]


def run(name: str, args) -> dict:
    from transferkit import tune
    from transferkit.config import read_config_file

    kind, relative, settings = DATASETS[name]
    data = args.data / relative
    folder = args.output / name
    candidates = [settings["encoder"]] if "encoder" in settings else None
    log(f"{name}: warming the features")
    warm_seconds, _ = head_run(kind, data, folder / "warm", **settings)
    tune(kind, data, trials=1, backbones=candidates, output=folder / "warm-tune", log=quiet)
    log(f"{name}: the default head, timed")
    base_seconds, base_score = head_run(kind, data, folder / "default", **settings)
    log(f"  {base_seconds:.1f} s, score {base_score:.4f}")
    log(f"{name}: tune, {args.trials} trials")
    started = time.perf_counter()
    summary = tune(kind, data, trials=args.trials, backbones=candidates, output=folder / "tune",
                   jobs=args.jobs, log=lambda line: log(f"  {line}"))
    tune_seconds = time.perf_counter() - started
    best = read_config_file(folder / "tune" / "best.toml")
    log(f"{name}: a head with best.toml")
    tuned_seconds, tuned_score = head_run(kind, data, folder / "tuned", **best)
    return {
        "name": name, "kind": kind, "jobs": args.jobs, "warm_up_seconds": round(warm_seconds, 1),
        "default": {"seconds": round(base_seconds, 1), "score": base_score},
        "tune": {"seconds": round(tune_seconds, 1), "trials": summary["trials"],
                 "best": summary["best"], "defaults": summary["defaults"],
                 "scored_on": summary["scored_on"]},
        "tuned": {"seconds": round(tuned_seconds, 1), "score": tuned_score, "settings": best},
    }


def table(results: list[dict], trials: int) -> str:
    lines = ["| data | row | seconds | x default head | score on the report's split |",
             "|---|---|---|---|---|"]
    for r in results:
        split = "validation accuracy" if r["kind"] == "images" else "test accuracy"
        base = r["default"]["seconds"]
        lines.append(f"| {r['name']} | baseline: default head (warm features) | {base:.1f} | "
                     f"1.00 | {r['default']['score']:.4f} ({split}) |")
        states = ", ".join(f"{k} {v}" for k, v in sorted(r["tune"]["trials"].items()))
        jobs = f", {r['jobs']} at once" if r["jobs"] > 1 else ""
        lines.append(f"| {r['name']} | tune, {trials} trials{jobs} ({states}) | "
                     f"{r['tune']['seconds']:.1f} | {r['tune']['seconds'] / base:.2f} | - |")
        lines.append(f"| {r['name']} | head with best.toml | {r['tuned']['seconds']:.1f} | "
                     f"{r['tuned']['seconds'] / base:.2f} | {r['tuned']['score']:.4f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(DATASETS))
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=1, help="tune's trials at once (threads)")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent
                        / "shared" / "data")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        raise SystemExit(f"--only: unknown {', '.join(unknown)}; choose from {', '.join(DATASETS)}")
    missing = [n for n in names if not (args.data / DATASETS[n][1]).exists()]
    if missing:
        raise SystemExit(f"{args.data}: no {', '.join(missing)} (see ../shared/data/SOURCES.md)")
    args.output = args.output or Path(tempfile.mkdtemp(prefix="tune-bench-"))
    results = [run(name, args) for name in names]
    print(table(results, args.trials))
    print(f"\n{os.cpu_count()} CPUs; outputs in {args.output}.")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
