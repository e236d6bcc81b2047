"""`transferkit export`: a trained model to SavedModel, ONNX or LiteRT, verified on its runtime."""

from __future__ import annotations

import sys

from transferkit.commands import MODEL_HELP, print_json


def add_commands(subparsers, train) -> None:
    from transferkit.export import FORMATS, QUANTIZATIONS

    export = subparsers.add_parser(
        "export", help="export a trained model to SavedModel, ONNX or LiteRT (verified)",
        description="Writes a folder with the model file, labels.json, input.json (the input "
        "contract), tokenizer.json (text, ONNX/LiteRT), MODEL_CARD.md and export.json, after "
        "checking the export's scores against the Keras model on its real runtime.",
    )
    export.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    export.add_argument("--format", required=True, choices=FORMATS, help="the format to write")
    export.add_argument(
        "--quantize", default="none", choices=QUANTIZATIONS,
        help="none (default); float16; dynamic (int8 weights); int8 (full-integer, calibrated "
        "on a sample of the training inputs)",
    )
    export.add_argument(
        "--output", dest="path", default=None, metavar="DIR",
        help="the folder to write (default: export/FORMAT[-QUANTIZE] in the model's run folder)",
    )
    export.add_argument(
        "--calibration", default=None, metavar="DATA",
        help="images folder or text table to calibrate int8 and verify on (default: the run's "
        "training data)",
    )
    export.add_argument("--samples", type=int, default=200,
                        help="calibration inputs to sample (default: 200)")
    export.add_argument("--overwrite", action="store_true",
                        help="replace an earlier export (a folder with export.json; never another "
                        "folder)")
    export.add_argument("--json", action="store_true", help="print export.json as JSON")
    export.set_defaults(handler=run_export)


def run_export(args) -> int:
    from transferkit.export import export

    record = export(
        args.model, args.path, format=args.format, quantize=args.quantize,
        calibration=args.calibration, samples=args.samples, overwrite=args.overwrite,
    )
    if record["verified"]["warning"]:
        print(f"WARNING: {record['verified']['warning']}", file=sys.stderr)
    if args.json:
        print_json(record)
        return 0
    verified = record["verified"]
    print(f"Exported {args.format} ({args.quantize}) to {record['path']}: "
          f"{record['model_file']}, {record['size_bytes'] / 1e6:.1f} MB")
    print(f"Verified with {verified['runtime']} on {verified['inputs']} inputs: largest score "
          f"difference {verified['max_abs_diff']:.2g}, top-1 agreement "
          f"{verified['top1_agreement']:.1%}")
    return 0
