"""`transferkit preview-augmentation`: draw augmented versions of one image, to check them."""

from __future__ import annotations

from transferkit.config import ImageTrainConfig


def add_commands(subparsers, train) -> None:
    preview = subparsers.add_parser(
        "preview-augmentation",
        help="draw augmented versions of one image, to check the augmentation",
    )
    preview.add_argument(
        "data", metavar="DATA", help="a data folder (its first image is used) or an image file"
    )
    preview.add_argument(
        "--output", default="augmentation.png", help="the PNG to write (default augmentation.png)"
    )
    preview.add_argument(
        "--augment", default=ImageTrainConfig.augment,
        help=f"as in `train images` (default {ImageTrainConfig.augment})",
    )
    preview.add_argument("--image-size", type=int, help="side in pixels (default: the backbone's)")
    preview.add_argument(
        "--backbone", default=ImageTrainConfig.backbone,
        help="sets the default size and resize policy",
    )
    preview.add_argument(
        "--count", type=int, default=12, help="panels, the original included (default 12)"
    )
    preview.add_argument(
        "--seed", type=int, default=ImageTrainConfig.seed,
        help="seed of the random layers (default 0)",
    )
    preview.set_defaults(handler=run_preview)


def run_preview(args) -> int:
    from transferkit.backbones.registry import get_spec
    from transferkit.checks import check_image_size, check_int, check_output_file
    from transferkit.data.image_folder import first_image
    from transferkit.reports.augmentation import preview_augmentation

    check_output_file(args.output, "output", ".png")  # before the work, not at its end
    if args.image_size is not None:  # 0 is not "the default": it is refused, as -1 is
        check_image_size(args.image_size)
    check_int(args.count, "count", minimum=1)
    spec = get_spec(args.backbone)
    image = first_image(args.data)
    path = preview_augmentation(
        image,
        args.output,
        args.augment,
        image_size=spec.default_input_size if args.image_size is None else args.image_size,
        policy=spec.preprocessing.resize,
        count=args.count,
        seed=args.seed,
    )
    print(f"Wrote {path} ({args.count} panels of {image})")
    return 0
