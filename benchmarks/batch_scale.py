"""Benchmark: batch embedding throughput, local streaming vs Ray Data, and per-core speed.

The issue "Scale out" asks how much Ray costs on one node (target: at most 25% more wall time
than local streaming for the same 2,000 images) and for measured per-core throughput to build
the cost model in `docs/scale.md`. Each row is one `transferkit embed ... --json` command in a
fresh process: `wall s` is the whole command (imports, model loading, Ray and its actors
starting); `start-up s` the job's seconds until its first shard was written; `steady items/s`
the rate after that, which is what a long job runs at (`time/item vs local`: Ray's overhead once
started):

- EfficientNet-Lite0 (224 px, ONNX Runtime) on the first 2,000 cats_and_dogs training photos;
- all-MiniLM-L6-v2 sentence vectors on the first 2,000 rt_polarity sentences;

locally on both cores, locally on one core (`taskset -c 0`: per-core speed), and with `--ray`
(a local Ray started by the command) with one actor on both cores and with two actors of one
core each. The feature cache is not used (`embed` never caches), the ONNX graph is exported
once before the timed rows. A last row times JPEG decoding and resizing alone on one core
(`load_resized` to 224 px, Pillow): what feeds a GPU, per core. Usage::

    python benchmarks/batch_scale.py [--count 2000] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from export_parity import SHARED, machine, print_table, write_results  # noqa: E402

CASES = {
    "efficientnet_lite0": ("images", "EfficientNet-Lite0 224 px, cats_and_dogs photos"),
    "minilm": ("texts", "all-MiniLM-L6-v2 sentence vectors, rt_polarity sentences"),
}
MODES = {
    "local, 2 cores": ([], None),
    "local, 1 core": ([], "0"),
    "ray, 1 actor x 2 CPUs": (["--ray", "--workers", "1"], None),
    "ray, 2 actors x 1 CPU": (["--ray", "--workers", "2"], None),
}


def _inputs(work: Path, count: int) -> dict[str, Path]:
    photos = sorted((SHARED / "cats_and_dogs" / "train").rglob("*.jpg"))[:count]
    images = work / "images.txt"
    images.write_text("\n".join(map(str, photos)) + "\n")
    lines = []
    for name in ("rt-polarity.pos", "rt-polarity.neg"):
        lines += (SHARED / "rt_polarity" / name).read_text(encoding="latin-1").splitlines()
    texts = work / "texts.txt"
    texts.write_text("\n".join(lines[:count]) + "\n", encoding="utf-8")
    return {"efficientnet_lite0": images, "minilm": texts}


def _embed(source: str, inputs: Path, output: Path, flags: list[str], cores: str | None):
    command = [sys.executable, "-m", "transferkit.cli", "embed", source, str(inputs),
               "--output", str(output), "--json", "--shard-size", "250", *flags]
    if cores is not None:
        command = ["taskset", "-c", cores, *command]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    shutil.rmtree(output)
    return wall, json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    if not (SHARED / "cats_and_dogs").is_dir() or not (SHARED / "rt_polarity").is_dir():
        print(f"skipped: the shared data is not at {SHARED}")
        return 0
    results = {"machine": machine(), "count": args.count, "rows": []}
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as scratch:
        work = Path(scratch)
        inputs = _inputs(work, args.count)
        # Warm-up: the ONNX graph of the backbone is exported and checked once, untimed.
        _embed("efficientnet_lite0", inputs["efficientnet_lite0"], work / "warm", [], None)
        rows = []
        for source, (unit, what) in CASES.items():
            for mode, (flags, cores) in MODES.items():
                wall, summary = _embed(source, inputs[source], work / "out", flags, cores)
                row = {"model": source, "mode": mode, "wall_seconds": round(wall, 1),
                       "job_items_per_second": summary["items_per_second"],
                       "items_per_wall_second": round(args.count / wall, 1),
                       "runtime": summary["runtime"], "unit": unit,
                       "startup_seconds": summary["startup_seconds"],
                       "steady_items_per_second": summary["steady_items_per_second"]}
                results["rows"].append(row)
                print(f"{source} {mode}: {wall:.1f} s", file=sys.stderr, flush=True)
                rows.append(row)
        results["decode_images_per_core_second"] = _decode_rate(inputs["efficientnet_lite0"])
    local = {r["model"]: r for r in rows if r["mode"] == "local, 2 cores"}
    table = [(r["model"], r["mode"], r["runtime"], r["wall_seconds"],
              f"{100 * (r['wall_seconds'] / local[r['model']]['wall_seconds'] - 1):+.0f}%",
              f"{r['startup_seconds']:.1f}", f"{r['steady_items_per_second']:.1f}",
              f"{100 * (local[r['model']]['steady_items_per_second'] / r['steady_items_per_second'] - 1):+.0f}%")
             for r in rows]
    print(f"\n{args.count} inputs each, shards of 250; {results['machine']}")
    print_table(("model", "mode", "runtime", "wall s", "wall vs local", "start-up s",
                 "steady items/s", "time/item vs local"), table)
    print(f"JPEG decode + resize to 224 px, one core: "
          f"{results['decode_images_per_core_second']:.0f} images/s")
    write_results(args.json, results)
    return 0


def _decode_rate(listing: Path, count: int = 500) -> float:
    """Images a second one core decodes and resizes (in a child pinned to core 0)."""
    code = (
        "import sys, time\n"
        "from transferkit.data.images import load_resized\n"
        "paths = open(sys.argv[1]).read().split()[:int(sys.argv[2])]\n"
        "load_resized(paths[0], (224, 224))\n"
        "t = time.perf_counter()\n"
        "for p in paths: load_resized(p, (224, 224))\n"
        "print(len(paths) / (time.perf_counter() - t))\n"
    )
    done = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code, str(listing),
                           str(count)], capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    sys.exit(main())
