"""`transferkit demo`: the main job end to end, offline, on real data that ships with dependencies."""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path

from transferkit.commands import print_json


def add_commands(subparsers, train) -> None:
    parser = subparsers.add_parser(
        "demo", help="predict ImageNet classes, then train image and text classifiers, offline"
    )
    parser.add_argument("--output", default="demo_output", help="folder for the runs (default: demo_output)")
    parser.add_argument(
        "--only", choices=("imagenet", "images", "text"), default=None, help="run one part only"
    )
    parser.add_argument(
        "--track", nargs="?", const=True, default=True, metavar="URI",
        help="log the runs to MLflow (default: $MLFLOW_TRACKING_URI, else the embedded store "
        "./mlflow.db; list them with `transferkit runs`)",
    )
    parser.add_argument("--no-track", dest="track", action="store_false",
                        help="do not log the runs to MLflow")
    parser.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    parser.set_defaults(handler=run)


def _track(requested):
    """What the training parts get as `track`: None when not asked for, or when the default
    was left on but mlflow is not installed (the demo still runs; a line says how to add it)."""
    from transferkit.errors import MissingDependencyError
    from transferkit.extras import require_installed

    if requested is False:
        return None
    try:
        require_installed("mlflow", "Tracking the demo's runs")
    except MissingDependencyError as exc:
        if requested is not True:
            raise
        print(f"({exc} The runs are not tracked.)")
        return None
    return requested


def _imagenet_part(output: Path) -> dict:
    from transferkit.demos.photos import sample_photos
    from transferkit.imagenet import predict_imagenet

    paths = sample_photos(output / "photos")
    started = time.perf_counter()
    results = predict_imagenet(paths, top=3)
    seconds = time.perf_counter() - started
    print("ImageNet predictions with EfficientNet-Lite0 (offline weights):")
    for result in results:
        best = result["top"][0]
        others = ", ".join(f"{t['label']} {t['probability']:.0%}" for t in result["top"][1:])
        print(f"  {Path(result['path']).name:<16} {best['label']} {best['probability']:.0%}  ({others})")
    return {"predictions": results, "seconds": round(seconds, 2)}


def run(args) -> int:
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    parts = [args.only] if args.only else ["imagenet", "images", "text"]
    track = _track(args.track) if set(parts) - {"imagenet"} else None
    summary = {}
    for part in parts:
        print(f"\n== demo: {part} ==")
        if part == "imagenet":
            summary[part] = _imagenet_part(output)
            continue
        module = importlib.import_module(f"transferkit.demos.{part}")
        summary[part] = module.run(output / part, track=track)
    # What `--json` prints, kept beside the runs: scripts (and CI's check of `make demo`) read it.
    (output / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(f"\nSummary: {output / 'summary.json'}")
    if args.json:
        print_json(summary)
    return 0
