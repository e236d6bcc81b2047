"""`transferkit serve`: a trained classifier behind an HTTP API and a web page."""

from __future__ import annotations

from transferkit.commands import MODEL_HELP
from transferkit.serving import MAX_BATCH, MAX_WAIT_MS


def add_commands(subparsers, train) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="serve a trained classifier over HTTP: POST /predict, a web page at /, docs at /docs",
    )
    serve.add_argument(
        "model", metavar="MODEL",
        help=MODEL_HELP + ", or a folder from `export --format onnx`",
    )
    serve.add_argument(
        "--runtime", default=None,
        help="onnx serves an export folder, the run's export/onnx, or an ONNX export made once "
        "into the cache; keras the .keras file; auto (default): onnx for export folders and image "
        "models, keras for text models",
    )
    serve.add_argument(
        "--host", default="127.0.0.1",
        help="address to listen on; 0.0.0.0 for every network (default 127.0.0.1)",
    )
    serve.add_argument(
        "--allowed-hosts", default=None, metavar="NAMES",
        help="comma-separated Host names to answer besides localhost, 127.0.0.1, ::1 and --host "
        "(for 0.0.0.0, this machine's name), such as models.example.org,192.168.1.5 or "
        "*.example.org; other names are refused, so that web pages elsewhere cannot reach the "
        "server through DNS rebinding. * answers any name",
    )
    serve.add_argument(
        "--port", type=int, default=8000,
        help="TCP port, 0 to 65535; 0 picks a free one (default 8000)",
    )
    serve.add_argument(
        "--max-batch", type=int, default=MAX_BATCH,
        help="the most inputs in one model call, 1 to 1024; concurrent requests share it "
        f"(default {MAX_BATCH})",
    )
    serve.add_argument(
        "--max-wait-ms", type=float, default=MAX_WAIT_MS,
        help="how long a batch waits for more requests, 0 to 1000 milliseconds "
        f"(default {MAX_WAIT_MS:g})",
    )
    serve.set_defaults(handler=run_serve)


def run_serve(args) -> int:
    from transferkit.serving.app import serve

    serve(
        args.model,
        runtime=args.runtime,
        host=args.host,
        port=args.port,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        allowed_hosts=args.allowed_hosts,
    )
    return 0
