"""`transferkit explain MODEL INPUT... --output DIR`: why the model says what it says.

Images: an overlay PNG per image (the heat map over the photo) and the map itself as `.npy` at
the photo's size; text: an HTML page per text with each word coloured by its score. `--json`
prints, per input, the prediction, what was explained, the files written and, for text, each
word with its score (`Classifier.explain` gives the same in Python).
"""

from __future__ import annotations

from transferkit.commands import MODEL_HELP, print_json


def add_commands(subparsers, train) -> None:
    from transferkit.explain.cams import METHODS
    from transferkit.explain.text import METHODS as TEXT_METHODS

    parser = subparsers.add_parser(
        "explain", help="heat maps of images or word scores of texts: why the model said it",
        description="Draws where in each image the evidence for the prediction lies (a class "
        "activation map on the backbone's last feature map, upsampled onto the photo) or scores "
        "each word of each text by how much the prediction falls without it.",
    )
    parser.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, or texts")
    parser.add_argument("--output", required=True, metavar="DIR",
                        help="the folder for the overlays and maps (images) or pages (text)")
    parser.add_argument("--label", default=None,
                        help="the class or label to explain (default: the predicted one)")
    parser.add_argument("--method", default=None, choices=(*METHODS, *TEXT_METHODS),
                        help=f"images: {', '.join(METHODS)} (default {METHODS[0]}); text: "
                        f"{', '.join(TEXT_METHODS)} (default {TEXT_METHODS[0]})")
    parser.add_argument("--json", action="store_true", help="print a JSON list")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from pathlib import Path

    from transferkit.checks import check_output_folder
    from transferkit.commands.models import check_inputs
    from transferkit.data.image_inputs import unreadable_error
    from transferkit.model_ref import ModelRef
    from transferkit.tasks.base import load

    output = check_output_folder(args.output, "output")  # before the model loads
    ref = ModelRef.resolve(args.model)
    check_inputs(ref, args.inputs, "explain")
    classifier = load(ref)
    results = classifier.explain(args.inputs, label=args.label, method=args.method)
    if results and all("skipped" in result for result in results):
        raise unreadable_error([{"path": r["path"], "reason": r["skipped"]} for r in results])
    output.mkdir(parents=True, exist_ok=True)
    shown = [_write(result, index, Path(output)) for index, result in enumerate(results)]
    if args.json:
        print_json(shown)
        return 0
    for row in shown:
        if "skipped" in row:
            print(f"skipped  {row['input']}: {row['skipped']}")
        else:
            print(f"{row['explained']} ({_score_text(row)}): {', '.join(row['files'])}")
    return 0


def _write(result: dict, index: int, output) -> dict:
    """Writes one input's files; returns its row for `--json` (no arrays)."""
    import re
    from pathlib import Path

    import numpy as np

    if "skipped" in result:
        return {"input": result["input"], "skipped": result["skipped"]}
    row = {key: value for key, value in result.items() if key != "map"}
    if "words" in result:
        from transferkit.explain.text import words_html

        path = output / f"text-{index:03d}.html"
        words_html(result, path)
        row["files"] = [str(path)]
        return row
    from transferkit.data.images import load_image
    from transferkit.explain.images import overlay
    from transferkit.files import atomic_path

    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(result["input"]).stem)[:60]
    picture = output / f"{index:03d}-{stem}.png"
    raw = output / f"{index:03d}-{stem}.npy"
    overlay(load_image(result["input"]), result["map"], result["seen"], picture,
            caption=f"{result['explained']} ({_score_text(result)}), {result['method']}")
    with atomic_path(raw) as temporary:
        np.save(temporary, result["map"])
    row["files"] = [str(picture), str(raw)]
    return row



def _score_text(result: dict) -> str:
    """The explained output in words: a probability as a percentage, a value as a number."""
    if "value" in result["prediction"]:
        return f"{result['score']:.4g}"
    return f"{result['score']:.1%}"
