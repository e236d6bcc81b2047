"""Batch jobs on a real local Ray cluster (`ray start --head` on 127.0.0.1), and a killed job
resumed: the same rows as the local run, within 1e-5. Slow: Ray and its actors take seconds to
start."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import transferkit
from helpers import run_child, shared_data
from transferkit.batch.output import ShardedParquet, read_output

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A one-node Ray cluster started with the `ray` command, as users start one: its address."""
    ray = shutil.which("ray", path=os.path.dirname(sys.executable))
    if ray is None:
        pytest.skip("the `ray` command is not installed (pip install 'transferkit[scale]')")
    port = _free_port()
    # Ray 2.60 turns token authentication on for clusters it starts; this one listens on
    # 127.0.0.1 for the tests alone.
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    temp = tmp_path_factory.mktemp("ray")
    subprocess.run(
        [ray, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1",
         "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats",
         f"--temp-dir={temp}"],
        check=True, env=env, timeout=120, capture_output=True,
    )
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray, "stop", "--force"], env=env, timeout=120, capture_output=True)


def _list_file(folder: Path, paths) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    listing = folder / "inputs.txt"
    listing.write_text("\n".join(map(str, paths)) + "\n")
    return listing


def test_predict_on_ray_equals_the_local_run(ray_cluster, cats_dogs_run, tmp_path):
    from transferkit.cli import main

    run = cats_dogs_run[1]
    validation = shared_data("cats_and_dogs") / "validation"
    paths = sorted(validation.rglob("*.jpg"))[::4][:250] + [validation / "missing.jpg"]
    listing = _list_file(tmp_path, paths)
    local = transferkit.batch_predict(run, listing, tmp_path / "local.parquet", progress=False)
    code = main(["predict", str(run), str(listing), "--output", str(tmp_path / "ray.parquet"),
                 "--ray", ray_cluster, "--workers", "2", "--shard-size", "64"])
    assert code == 0 and local["done"] == 251 and local["errors"] == 1
    left, right = read_output(tmp_path / "local.parquet"), read_output(tmp_path / "ray.parquet")
    assert left["path"].tolist() == right["path"].tolist()
    assert left["label"].tolist()[:250] == right["label"].tolist()[:250]
    columns = ["score", "prob_cats", "prob_dogs"]
    diff = np.nanmax(np.abs(left[columns].to_numpy() - right[columns].to_numpy()))
    assert diff <= 1e-5
    assert right["error"].notna().tolist() == [False] * 250 + [True]
    assert len(ShardedParquet(tmp_path / "ray.parquet").pieces()) == 4  # 251 in shards of 64


def test_embed_sentences_on_ray_equals_the_local_run(ray_cluster, tmp_path):
    polarity = shared_data("rt_polarity")
    lines = (polarity / "rt-polarity.pos").read_text(encoding="latin-1").splitlines()[:150]
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(lines) + "\n", encoding="utf-8")
    local = transferkit.batch_embed("minilm", texts, tmp_path / "local.parquet", progress=False)
    remote = transferkit.batch_embed("minilm", texts, tmp_path / "ray.parquet", ray=ray_cluster,
                               workers=1, shard_size=50, progress=False)
    assert local["done"] == remote["done"] == 150 and remote["engine"] == "ray"
    left, right = read_output(tmp_path / "local.parquet"), read_output(tmp_path / "ray.parquet")
    assert left["text"].tolist() == right["text"].tolist()
    vectors = np.stack(right["embedding"].to_numpy())
    assert vectors.shape == (150, 384)
    np.testing.assert_allclose(np.stack(left["embedding"].to_numpy()), vectors, atol=1e-5)


def test_a_killed_job_resumes_without_repeating_finished_shards(image_run, faces, tmp_path):
    run = image_run[3]
    paths = sorted(faces.rglob("*.png")) * 40  # 1,600 inputs: the job outlives the kill
    listing = _list_file(tmp_path, paths)
    output = tmp_path / "predictions.parquet"
    child = run_child(f"""
        import transferkit
        transferkit.batch_predict({str(run)!r}, {str(listing)!r}, {str(output)!r}, shard_size=40,
                            progress=False)
    """, tmp_path)
    first = _wait_for_piece(output, child)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    child.stderr.close()
    written = {p.name: p.stat().st_mtime_ns for p in ShardedParquet(output).pieces()}
    assert first in written and len(written) < 40
    summary = transferkit.batch_predict(run, listing, output, shard_size=40, progress=False)
    assert summary["resumed"] == 40 * len(written) and summary["done"] == 1600 - 40 * len(written)
    pieces = ShardedParquet(output).pieces()
    assert {p.name: p.stat().st_mtime_ns for p in pieces if p.name in written} == written
    table = read_output(output)
    assert table["index"].tolist() == list(range(1600))  # each input once
    np.testing.assert_allclose(table["prob_face"][:40], table["prob_face"][40:80], atol=1e-6)


def _wait_for_piece(output: Path, child, timeout: float = 180.0) -> str:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pieces = ShardedParquet(output).pieces()
        if pieces:
            return pieces[0].name
        if child.poll() is not None:
            raise AssertionError(f"child exited early: {child.stderr.read().decode()[-3000:]}")
        time.sleep(0.05)
    child.kill()
    raise AssertionError("no piece written in time")
