"""`transferkit train text`: train a text classifier on a table of labelled texts."""

from __future__ import annotations

import sys

from transferkit.commands import print_json


def add_commands(subparsers, train) -> None:
    parser = train.add_parser(
        "text",
        help="train a text classifier (GloVe + BiLSTM, or a MiniLM sentence encoder)",
        description=(
            "Train a text classifier by transfer learning on DATA, a CSV, TSV, JSON Lines or "
            "Parquet table with a text column and a label column. The run folder gets the model "
            "(model.keras), checkpoints, TensorBoard logs and a report."
        ),
    )
    parser.add_argument("data", metavar="DATA", nargs="?", help="the table of texts and labels")
    parser.add_argument(
        "--text-column",
        default=None,
        help="column with the texts (default: text, sentence or review)",
    )
    parser.add_argument(
        "--label-column", default=None, help="column with the labels (default: label or sentiment)"
    )
    parser.add_argument(
        "--encoder",
        default="glove-bilstm",
        help="glove-bilstm (default), minilm, a sentence-transformers model folder, or a KerasHub "
        "preset such as hf://sentence-transformers/all-MiniLM-L6-v2 (online)",
    )
    parser.add_argument(
        "--word-vectors",
        default=None,
        metavar="PATH",
        help="for glove-bilstm: a GloVe .txt, word2vec .bin/.txt or fastText .vec file "
        "(default: the packaged GloVe 6B 50d)",
    )
    parser.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="tokens per text (default: 100 words for glove-bilstm; for sentence encoders the 95th "
        "percentile of the training texts, at most 256)",
    )
    parser.add_argument(
        "--vocabulary-size",
        type=int,
        default=10_000,
        help="word ids for glove-bilstm (default: 10000)",
    )
    parser.add_argument(
        "--features",
        choices=["layers", "sentence"],
        default=None,
        help="for sentence encoders, what the head learns from: layers (every layer's mean-pooled "
        "output, concatenated; the default, about two points more accurate) or sentence (the "
        "encoder's own sentence vector)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="most head epochs (default: 30 glove-bilstm, 100 minilm)",
    )
    parser.add_argument(
        "--fine-tune-epochs",
        type=int,
        default=0,
        help="then unfreeze the encoder for this many epochs at a low learning rate (default: 0)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help="training batch size (default: 32)"
    )
    parser.add_argument(
        "--test-size", type=float, default=0.2, help="share held out for the test (default: 0.2)"
    )
    parser.add_argument(
        "--validation-size", type=float, default=0.1, help="share for validation (default: 0.1)"
    )
    parser.add_argument(
        "--output", default=None, metavar="RUN_DIR", help="run folder (default: runs/text-<time>)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the split and training (default: 0)"
    )
    parser.add_argument(
        "--resume",
        default=None,
        metavar="RUN_DIR",
        help="continue an interrupted run from its last finished epoch, with its saved settings",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the result as JSON on the last line"
    )
    parser.set_defaults(handler=run_train_text)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_train_text(args) -> int:
    from transferkit.errors import InputError
    from transferkit.tasks.text_classifier import train_text_classifier

    if args.data is None and args.resume is None:
        raise InputError("Pass the DATA table to train on, or --resume RUN_DIR.")
    result = train_text_classifier(
        args.data,
        text_column=args.text_column,
        label_column=args.label_column,
        encoder=args.encoder,
        word_vectors=args.word_vectors,
        max_length=args.max_length,
        vocabulary_size=args.vocabulary_size,
        features=args.features,
        epochs=args.epochs,
        fine_tune_epochs=args.fine_tune_epochs,
        batch_size=args.batch_size,
        test_size=args.test_size,
        validation_size=args.validation_size,
        output=args.output,
        seed=args.seed,
        resume=args.resume,
        verbose=0 if args.json else 2,
        log=_log,
    )
    if args.json:
        print_json(result)
        return 0
    summary = (
        f"classes: {', '.join(result['classes'])}\n"
        f"validation accuracy: {result['validation_accuracy']:.4f}\n"
        f"test accuracy: {result['test_accuracy']:.4f} (head {result['head_test_accuracy']:.4f}"
    )
    if result["fine_tune_test_accuracy"] is not None:
        summary += f", fine-tuned {result['fine_tune_test_accuracy']:.4f}"
    summary += ")\n"
    if "vocabulary_coverage" in result:
        summary += (
            f"word vectors: {result['vocabulary_coverage']:.1%} of the vocabulary, "
            f"{result['token_coverage']:.1%} of the tokens\n"
        )
    if result["dropped_rows"]:
        summary += (
            f"dropped rows: {result['dropped_rows']} (see {result['report_dir']}/data.json)\n"
        )
    summary += (
        f"model: {result['model_path']}\nreport: {result['report_dir']}\n"
        f"time: {result['seconds']:.0f} s"
    )
    print(summary)
    return 0
