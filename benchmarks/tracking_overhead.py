"""Benchmark: what MLflow tracking costs a training run (the issue "Track": <= 5% of wall time).

Runs the demo's image training (`transferkit.demos.images.DEMO_OPTIONS`: EfficientNet-Lite0 at 96
px on the 200 lfw_subset faces, 30 head epochs, 3 fine-tuning epochs) as `transferkit train
images` in a fresh process, untracked and with `--track` to an embedded SQLite store, alternating
over `--rounds` rounds after one warm-up run (so the feature cache is equally warm for all).
Tracked runs go to a new store (`--track` on a new `mlflow.db`: the store's tables are created)
and to the same store again. Reports medians of the wall time and of the seconds the training
thread waited for MLflow (`result["tracking"]["waited_seconds"]`: the report, the model and the
registry at the end; per-epoch logging runs on a background thread). `--data cats_and_dogs`
runs the default command on the shared photos instead (`train images cats_and_dogs
--fine-tune-epochs 0`, 2,000 + 1,000 photos at 224 px), a run of a more usual length. Usage::

    python benchmarks/tracking_overhead.py [--data demo|cats_and_dogs] [--cold] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from export_parity import SHARED, print_table, write_results  # noqa: E402


def _flags(options: dict) -> list[str]:
    flags = []
    for name, value in options.items():
        flags += ["--" + name.replace("_", "-"), str(value)]
    return flags


def _train(data: Path, output: Path, flags: list[str], track: str | None,
           cache: Path | None = None) -> tuple[float, dict]:
    command = [sys.executable, "-m", "transferkit.cli", "train", "images", str(data), "--output",
               str(output), "--json", *flags]
    if track:
        command += ["--track", track, "--experiment", "overhead"]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    if cache is not None:  # a cold cache: features, graphs and converted weights made anew
        env["TRANSFERKIT_CACHE_DIR"] = str(cache)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return wall, json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", choices=("demo", "cats_and_dogs"), default="demo")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cold", action="store_true",
                        help="a new, empty transferkit cache for every run (no warm-up run)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    from transferkit.demos.images import DEMO_OPTIONS, write_lfw_subset

    flags = _flags(DEMO_OPTIONS) if args.data == "demo" else ["--fine-tune-epochs", "0"]
    with tempfile.TemporaryDirectory(prefix="bench-tracking-") as temp:
        root = Path(temp)
        data = (write_lfw_subset(root / "lfw_faces") if args.data == "demo"
                else SHARED / "cats_and_dogs")
        if not data.is_dir():
            raise SystemExit(f"{data}: the shared data is not here (see ../shared/data).")
        if not args.cold:
            _train(data, root / "warm-up", flags, None)
        times: dict[str, list[float]] = {"untracked": [], "tracked, new store": [],
                                         "tracked, same store": []}
        waited: dict[str, list[float]] = {key: [] for key in times}
        same_store = f"sqlite:///{root / 'same' / 'mlflow.db'}"
        (root / "same").mkdir()
        for round_ in range(args.rounds):
            modes = list(times) if round_ % 2 == 0 else list(reversed(times))
            for mode in modes:
                store = {"untracked": None, "tracked, same store": same_store}.get(
                    mode, f"sqlite:///{root / f'new-{round_}.db'}")
                folder = root / f"run-{round_}-{list(times).index(mode)}"
                cache = root / f"cache-{round_}-{list(times).index(mode)}" if args.cold else None
                wall, result = _train(data, folder, flags, store, cache)
                times[mode].append(wall)
                waited[mode].append((result.get("tracking") or {}).get("waited_seconds", 0.0))
                print(f"round {round_ + 1} {mode}: {wall:.1f} s, waited "
                      f"{waited[mode][-1]:.2f} s", flush=True)
    base = statistics.median(times["untracked"])
    rows = []
    for mode, walls in times.items():
        median = statistics.median(walls)
        rows.append((mode, f"{median:.1f}", " ".join(f"{w:.1f}" for w in walls),
                     f"{statistics.median(waited[mode]):.2f}",
                     "-" if mode == "untracked" else f"{(median - base) / base:+.1%}"))
    print()
    print_table(("run", "median wall s", "all runs s", "waited for MLflow s", "vs untracked"),
                rows)
    write_results(args.json, {"times": times, "waited": waited})
    return 0


if __name__ == "__main__":
    sys.exit(main())
