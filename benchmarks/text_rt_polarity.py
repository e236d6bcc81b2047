"""Benchmark: text classifiers on the sentence polarity dataset (rt-polarity, 10,662 sentences).

Usage:
    python benchmarks/text_rt_polarity.py [--data PATH]
        [--only glove-bilstm glove-bilstm-ft minilm minilm-ft mpnet mpnet-ft]
                                          [--fine-tune-epochs 2] [--output benchmarks/results/text]

One fixed, seeded, stratified 80/10/10 split (seed 0) for every row; each row is a full
`transferkit train text` run (split, train, evaluate, report, save). Prints one table: test
accuracy against the issue's targets, wall time, and the frozen encoder's embedding speed.

Anchors on this corpus (MR): logistic regression on averaged GloVe vectors 77.3; SBERT-NLI-base
83.6 (SentEval, 10-fold cross-validation, so not the same split).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEFAULT_DATA = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "rt_polarity" / "sentences.csv"
)

# name -> (train_text settings, target test accuracy)
CONFIGS = {
    "glove-bilstm": ({"encoder": "glove-bilstm"}, 0.75),
    "glove-bilstm-ft": ({"encoder": "glove-bilstm"}, 0.75),  # + embedding fine-tuning
    "minilm": ({"encoder": "minilm"}, 0.78),
    "minilm-ft": ({"encoder": "minilm"}, 0.82),  # fine_tune_epochs added from the command line
    # all-mpnet-base-v2 (issue 32's bars: frozen >= 0.84, fine-tuned >= 0.87)
    "mpnet": ({"encoder": "mpnet"}, 0.84),
    "mpnet-ft": ({"encoder": "mpnet"}, 0.87),
}
LABELS = {
    "glove-bilstm": "glove-bilstm (GloVe 6B 50d frozen, BiLSTM)",
    "glove-bilstm-ft": "glove-bilstm, then embedding fine-tuned",
    "minilm": "minilm frozen (cached layer features, linear head)",
    "minilm-ft": "minilm fine-tuned",
    "mpnet": "mpnet frozen (all-mpnet-base-v2, cached layer features, linear head)",
    "mpnet-ft": "mpnet fine-tuned",
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="sentences.csv (text,sentiment)"
    )
    parser.add_argument(
        "--only", nargs="+", choices=list(CONFIGS), default=["glove-bilstm", "minilm", "minilm-ft"]
    )
    parser.add_argument("--fine-tune-epochs", type=int, default=2)
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/text"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.data.is_file():
        print(f"skipped: the rt-polarity data is not at {args.data} (pass --data PATH)")
        return 0

    from transferkit.pipelines.text import train_text
    from transferkit.run_folder import default_run_dir

    rows = []
    for name in args.only:
        settings, target = CONFIGS[name]
        settings = dict(settings)
        if name.endswith("-ft"):
            settings["fine_tune_epochs"] = args.fine_tune_epochs
        print(f"== {name} ==", file=sys.stderr, flush=True)
        started = time.perf_counter()
        result = train_text(
            args.data,
            test_size=0.1,
            validation_size=0.1,
            seed=args.seed,
            output=default_run_dir(name, root=args.output),
            verbose=0,
            log=lambda message: print(f"  {message}", file=sys.stderr, flush=True),
            **settings,
        )
        seconds = time.perf_counter() - started
        rows.append((name, result, target, seconds))
        print(
            f"  {name}: test accuracy {result['test_accuracy']:.4f} in {seconds:.0f} s",
            file=sys.stderr,
            flush=True,
        )

    print()
    print(
        "| encoder | test accuracy | target | met | validation accuracy | wall time | embedding speed |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, result, target, seconds in rows:
        speed = result.get("embedding_sentences_per_second")
        label = LABELS[name]
        if name.endswith("-ft"):
            label += f" ({args.fine_tune_epochs} epochs, head {result['head_test_accuracy']:.4f})"
        print(
            f"| {label} | {result['test_accuracy']:.4f} | >= {target:.2f} | "
            f"{'yes' if result['test_accuracy'] >= target else 'MISSED'} | "
            f"{result['validation_accuracy']:.4f} | {seconds:.0f} s | "
            f"{f'{speed:.0f} sentences/s' if speed else '-'} |"
        )
    print()
    print(
        f"rt-polarity, {sum(rows[0][1]['splits'].values()) if rows else 0} sentences, seeded "
        "stratified 80/10/10 split (seed "
        f"{args.seed}); anchors: LR on averaged GloVe 77.3, SBERT-NLI-base 83.6 (SentEval MR)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
