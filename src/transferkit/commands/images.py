"""`transferkit train images` and `transferkit preview-augmentation`: parse, call, print."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from transferkit.commands import print_json

# flag, type, help (the default shown is `TRAIN_DEFAULTS`'s)
_TRAIN_FLAGS = (
    ("--backbone", str, "registered backbone (default efficientnet_lite0)"),
    ("--image-size", int, "input side in pixels (default: the backbone's)"),
    ("--weights", str, "'imagenet' (default) or a .weights.h5 file"),
    ("--epochs", int, "head epochs on cached features (default 20)"),
    ("--fine-tune-epochs", int, "fine-tuning epochs, 0 to skip (default 10)"),
    ("--learning-rate", float, "head learning rate (default 1e-3)"),
    ("--fine-tune-lr", float, "fine-tuning learning rate (default 1e-5)"),
    ("--unfreeze", str, "what fine-tuning trains: all, N (top N layers) or a layer name "
     "(default all)"),
    ("--augment", str, "comma-separated: flip,vflip,rotate,zoom,translate,contrast,brightness, "
     "or none (default flip,rotate,zoom)"),
    ("--augment-views", int, "augmented views per image cached for the head (default 2)"),
    ("--batch-size", int, "images per step (default 32)"),
    ("--validation-split", float, "fraction held out per class when DATA_DIR is not split "
     "(default 0.2)"),
    ("--patience", int, "early-stopping patience of the head (default 5)"),
    ("--fine-tune-patience", int, "early-stopping patience of fine-tuning (default 3)"),
    ("--dropout", float, "dropout before the last layer (default 0.2)"),
    ("--seed", int, "seed of the split, shuffles and augmentation (default 0)"),
)

# The options of `train_images`: the flags' names with underscores.
_TRAIN_OPTIONS = tuple(flag[2:].replace("-", "_") for flag, _, _ in _TRAIN_FLAGS)


def add_commands(subparsers, train) -> None:
    parser = train.add_parser(
        "images",
        help="train an image classifier on a folder of class sub-folders",
        description=(
            "Transfer learning on images: a frozen pretrained backbone, a head trained on cached "
            "features, then fine-tuning. Writes RUN_DIR/model.keras and RUN_DIR/report/."
        ),
    )
    parser.add_argument(
        "data_dir", nargs="?", metavar="DATA_DIR",
        help="class sub-folders, or train/ and validation/ (or val/) with class sub-folders",
    )
    for flag, kind, text in _TRAIN_FLAGS:
        parser.add_argument(flag, type=kind, help=text)
    parser.add_argument(
        "--config", metavar="FILE", help="TOML or JSON file of defaults; flags override it"
    )
    parser.add_argument("--output", metavar="RUN_DIR", help="run folder (default runs/images-<time>)")
    parser.add_argument(
        "--resume", metavar="RUN_DIR", help="continue an interrupted run from its last finished epoch"
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object of results as the last line"
    )
    parser.set_defaults(handler=run_train)

    preview = subparsers.add_parser(
        "preview-augmentation",
        help="draw augmented versions of one image, to check the augmentation",
    )
    preview.add_argument(
        "data_dir", metavar="DATA_DIR",
        help="a data folder (its first image is used) or an image file",
    )
    preview.add_argument(
        "--output", default="augmentation.png", help="the PNG to write (default augmentation.png)"
    )
    preview.add_argument(
        "--augment", default="flip,rotate,zoom", help="as in `train images` (default flip,rotate,zoom)"
    )
    preview.add_argument("--image-size", type=int, help="side in pixels (default: the backbone's)")
    preview.add_argument(
        "--backbone", default="efficientnet_lite0", help="sets the default size and resize policy"
    )
    preview.add_argument("--count", type=int, default=12, help="panels, the original included (default 12)")
    preview.add_argument("--seed", type=int, default=0, help="seed of the random layers (default 0)")
    preview.set_defaults(handler=run_preview)


def _read_config_file(path: str) -> dict:
    from transferkit.errors import InputError

    file = Path(path)
    if not file.is_file():
        raise InputError(f"{file}: no such config file. Pass a TOML or JSON file.")
    text = file.read_text(encoding="utf-8")
    try:
        if file.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import tomllib

            data = tomllib.loads(text)
    except (ValueError, json.JSONDecodeError) as exc:
        kind = file.suffix.lstrip(".").upper() or "TOML"
        raise InputError(f"{file}: not valid {kind} ({exc}).") from None
    data = {str(k).replace("-", "_"): v for k, v in data.items()}
    unknown = sorted(set(data) - set(_TRAIN_OPTIONS))
    if unknown:
        raise InputError(
            f"{file}: unknown option(s) {', '.join(unknown)}. Known: {', '.join(_TRAIN_OPTIONS)}."
        )
    return data


def run_train(args) -> int:
    from transferkit.tasks.image_classifier import train_images

    options = _read_config_file(args.config) if args.config else {}
    options.update(
        {name: getattr(args, name) for name in _TRAIN_OPTIONS if getattr(args, name) is not None}
    )
    # With --json, stdout carries only the JSON line; progress goes to stderr.
    out = sys.stderr if args.json else sys.stdout

    def log(line: str) -> None:
        print(line, file=out, flush=True)

    result = train_images(
        args.data_dir,
        output=args.output,
        resume=args.resume,
        verbose=0 if args.json else 2,
        log=log,
        **options,
    )
    summary = result.pop("summary", "")
    print("", file=out)
    print(summary.rstrip(), file=out)
    print(f"\nModel:  {result['model_path']}", file=out)
    print(f"Report: {result['report_dir']}", file=out)
    print(f"Time:   {result['seconds']:.0f} s", file=out)
    if args.json:
        print_json(result)
    return 0


def run_preview(args) -> int:
    from transferkit.backbones.registry import get_spec
    from transferkit.data.augmentation import preview_augmentation
    from transferkit.data.image_folder import first_image

    spec = get_spec(args.backbone)
    image = first_image(args.data_dir)
    path = preview_augmentation(
        image,
        args.output,
        args.augment,
        image_size=args.image_size or spec.default_input_size,
        policy=spec.preprocessing.resize,
        count=args.count,
        seed=args.seed,
    )
    print(f"Wrote {path} ({args.count} panels of {image})")
    return 0

