"""Load test of `transferkit serve` on this machine (127.0.0.1 only): batching and steadiness.

Run: .venv/bin/python benchmarks/serve_load.py MODEL [--requests 2000] [--concurrency 16]
MODEL: a .keras file, a run folder or an export folder (train one first, for example
`transferkit train images ../shared/data/cats_and_dogs/train --epochs 2 --fine-tune-epochs 0
--output /tmp/serve_bench`).

The server runs as its own process (`python -m transferkit.cli serve MODEL --port 0`), so its
memory is measured alone. Inputs are real: JPEGs from ../shared/data/cats_and_dogs/validation for
image models, sentences from ../shared/data/rt_polarity for text models; the benchmark says why
and stops when they are absent.

(a) Batching: images (or texts) per second for one client sending one input at a time, then for
    `--concurrency` clients at once; the ratio is what dynamic batching buys.
(b) Load: `--requests` requests of one input each at `--concurrency`, after a warm-up: requests
    per second, p50 and p99 latency, errors (must be 0), and the server's resident memory after the
    warm-up and after the run (must grow by at most 10%).
Exits 1 when (b) has errors or memory grows by more than 10%.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from transferkit.serving import MAX_BATCH, MAX_WAIT_MS

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
IMAGES = SHARED / "cats_and_dogs" / "validation"
TEXTS = SHARED / "rt_polarity"
MAX_MEMORY_GROWTH = 0.10


def skip(reason: str) -> None:
    print(f"skipped: {reason}")
    sys.exit(0)


def inputs_for(task: str, count: int) -> list:
    """`count` real inputs: `("files", (name, bytes, type))` tuples, or strings."""
    if task == "image":
        if not IMAGES.is_dir():
            skip(f"needs real photos at {IMAGES} (see ../shared/data/SOURCES.md)")
        paths = sorted(IMAGES.glob("*/*.jpg"))[:count]
        return [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]
    files = sorted(TEXTS.glob("rt-polarity.*")) if TEXTS.is_dir() else []
    if not files:
        skip(f"needs real sentences at {TEXTS} (see ../shared/data/SOURCES.md)")
    lines = [line for f in files for line in f.read_bytes().decode("cp1252").splitlines()]
    return [line for line in lines if line.strip()][:count]


class Server:
    """`transferkit serve MODEL --port 0` in a child process; `url`, `rss()`, `stop()`."""

    def __init__(self, model: str, args):
        command = [sys.executable, "-m", "transferkit.cli", "serve", model, "--port", "0",
                   "--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms)]
        if args.runtime:
            command += ["--runtime", args.runtime]
        self.log = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=self.log, text=True,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        )
        line = self.process.stdout.readline()  # the URL line, once the model is loaded
        match = re.search(r"at (http://\S+)", line)
        if not match:
            self.stop()
            self.log.seek(0)
            sys.exit(f"the server did not start:\n{line}{self.log.read()[-3000:]}")
        self.url = match.group(1)

    def rss(self) -> int | None:
        """Resident memory of the server process in bytes (Linux), or None."""
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return None
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        return int(match.group(1)) * 1024 if match else None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(2)  # SIGINT, as Ctrl+C
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()


def run_requests(url: str, task: str, inputs: list, count: int, concurrency: int):
    """Sends `count` requests of one input each from `concurrency` threads (one HTTP session
    each); returns (seconds, latencies in s of the successes, errors)."""
    local = threading.local()

    def one(index: int):
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        item = inputs[index % len(inputs)]
        started = time.perf_counter()
        try:
            if task == "image":
                response = session.post(url + "/predict", files=[item], timeout=120)
            else:
                response = session.post(url + "/predict", json={"texts": [item]}, timeout=120)
            ok = response.status_code == 200 and len(response.json()) == 1
        except requests.RequestException:
            ok = False
        return ok, time.perf_counter() - started

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(count)))
    seconds = time.perf_counter() - started
    latencies = [latency for ok, latency in results if ok]
    return seconds, latencies, sum(1 for ok, _ in results if not ok)


def batching(server: Server, task: str, inputs: list, args) -> list[str]:
    """Rows of table (a): one client vs `--concurrency` clients."""
    rows = []
    rates = {}
    for clients, count in ((1, args.sequential), (args.concurrency, args.sequential * 4)):
        before = requests.get(server.url + "/health", timeout=30).json()["batching"]
        seconds, latencies, errors = run_requests(server.url, task, inputs, count, clients)
        after = requests.get(server.url + "/health", timeout=30).json()["batching"]
        batches = after["batches"] - before["batches"]
        mean_batch = (after["items"] - before["items"]) / batches if batches else 0.0
        rates[clients] = len(latencies) / seconds
        rows.append(f"| {clients} client{'s' if clients > 1 else ''}, 1 {task} per request | "
                    f"{count} | {rates[clients]:.1f} | {mean_batch:.2f} | "
                    f"{1000 * statistics.median(latencies):.1f} | {errors} |")
    ratio = rates[args.concurrency] / rates[1]
    rows.append(f"| ratio ({args.concurrency} clients / 1) | | {ratio:.2f}x | | | |")
    return rows


def load(server: Server, task: str, inputs: list, args) -> tuple[list[str], bool]:
    """Rows of table (b), and whether it passed (no errors, memory growth within bounds)."""
    run_requests(server.url, task, inputs, args.warmup, args.concurrency)
    rss_before = server.rss()
    seconds, latencies, errors = run_requests(
        server.url, task, inputs, args.requests, args.concurrency
    )
    rss_after = server.rss()
    latencies.sort()

    def quantile(q):
        return 1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies \
            else float("nan")

    growth = (rss_after - rss_before) / rss_before if rss_before and rss_after else None
    memory = (f"{rss_before / 2**20:.0f} -> {rss_after / 2**20:.0f} MiB ({growth:+.1%})"
              if growth is not None else "n/a (no /proc)")
    passed = errors == 0 and (growth is None or growth <= MAX_MEMORY_GROWTH)
    rows = [
        "| requests | concurrency | req/s | p50 ms | p99 ms | errors | server RSS after warm-up "
        "-> after | verdict |",
        "|---|---|---|---|---|---|---|---|",
        f"| {args.requests} | {args.concurrency} | {len(latencies) / seconds:.1f} | "
        f"{quantile(0.50):.1f} | {quantile(0.99):.1f} | {errors} | {memory} | "
        f"{'ok' if passed else 'FAIL'} |",
    ]
    return rows, passed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", metavar="MODEL", help="a .keras file, run folder or export folder")
    parser.add_argument("--runtime", default=None, help="keras or onnx (default: the model's)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--sequential", type=int, default=48,
                        help="requests of the one-client run in (a); 4x as many concurrent ones")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--max-batch", type=int, default=MAX_BATCH)
    parser.add_argument("--max-wait-ms", type=float, default=MAX_WAIT_MS)
    args = parser.parse_args()
    if not Path(args.model).exists():
        sys.exit(f"{args.model}: no such model. Train one first (see the docstring).")
    server = Server(args.model, args)
    try:
        metadata = requests.get(server.url + "/metadata", timeout=30).json()
        task = metadata["task"]
        inputs = inputs_for(task, 64)
        print(f"Model {args.model}: {task}, {metadata.get('backbone') or metadata.get('encoder')}"
              f", runtime {metadata['runtime']}; max batch {args.max_batch}, max wait "
              f"{args.max_wait_ms} ms; {os.cpu_count()} CPUs; {len(inputs)} distinct inputs.\n")
        print("(a) dynamic batching\n")
        print(f"| clients | requests | {task}s/s | mean batch | p50 ms | errors |")
        print("|---|---|---|---|---|---|")
        print("\n".join(batching(server, task, inputs, args)))
        print("\n(b) sustained load\n")
        rows, passed = load(server, task, inputs, args)
        print("\n".join(rows))
    finally:
        server.stop()
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
