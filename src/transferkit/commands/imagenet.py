"""`transferkit predict-imagenet`: ImageNet classes of images, with a pretrained backbone."""

from __future__ import annotations

from transferkit.commands import print_json
from transferkit.config import ImageTrainConfig
from transferkit.reports.metrics import percent


def add_commands(subparsers, train) -> None:
    parser = subparsers.add_parser(
        "predict-imagenet", help="predict ImageNet classes of images with a pretrained backbone"
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    parser.add_argument(
        "--backbone", default=ImageTrainConfig.backbone,
        help=f"a registered backbone (default: {ImageTrainConfig.backbone})",
    )
    parser.add_argument(
        "--weights", default=ImageTrainConfig.weights,
        help="'imagenet' (default) or PATH to a .weights.h5 file",
    )
    parser.add_argument("--top", type=int, default=3, help="classes per image (default: 3)")
    parser.add_argument("--json", action="store_true", help="print a JSON list")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from transferkit.imagenet import predict_imagenet

    results = predict_imagenet(args.images, top=args.top, backbone=args.backbone, weights=args.weights)
    if args.json:
        print_json(results)
        return 0
    for result in results:
        print(result["path"])
        if "skipped" in result:
            print(f"  skipped: {result['skipped']}")
        for rank, entry in enumerate(result["top"], start=1):
            print(f"  {rank}. {entry['label']:<32} {percent(entry['probability'])}  (class {entry['index']})")
    return 0
