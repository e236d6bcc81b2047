"""Against a real `mlflow server` on 127.0.0.1 (slow): a run tracked over HTTP and registered
loads back as `models:/NAME@champion` with the run's predictions; a server that goes away in the
middle of a run costs nothing: training finishes, warns once, and `runs upload` fills the same
MLflow run when the server is back."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from helpers import toy_texts, write_table

mlflow = pytest.importorskip("mlflow", reason="the tracking extra: pip install 'transferkit[tracking]'")
pytestmark = pytest.mark.slow


class Server:
    """`mlflow server` on 127.0.0.1 with a SQLite store and proxied artifacts in `root`."""

    def __init__(self, root: Path):
        self.root = root
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = None

    def start(self) -> None:
        mlflow_cli = Path(sys.executable).parent / "mlflow"
        self.log = open(self.root / "server.log", "ab")
        self.process = subprocess.Popen(
            [str(mlflow_cli), "server", "--backend-store-uri", f"sqlite:///{self.root / 'db.sqlite'}",
             "--artifacts-destination", str(self.root / "artifacts"), "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", "1"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.time() + 90
        while time.time() < deadline:
            assert self.process.poll() is None, (self.root / "server.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise AssertionError("mlflow server did not start in 90 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        self.log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("mlflow-server"))
    server.start()
    yield server
    server.stop()


def _cli(argv):
    import contextlib
    import io

    from transferkit.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def test_a_run_registered_on_a_server_loads_back_as_champion(server, tmp_path, vectors_file,
                                                             monkeypatch):
    import transferkit

    table = write_table(tmp_path / "reviews.csv")
    run = tmp_path / "run"
    code, out, err = _cli(["train", "text", table, "--word-vectors", vectors_file, "--epochs", "3",
                           "--output", run, "--track", server.url, "--register", "tiny", "--json"])
    assert code == 0, err
    tracking = json.loads(out.strip().splitlines()[-1])["tracking"]
    assert tracking["uri"] == server.url and tracking["registered"] == "models:/tiny/1"
    code, _, err = _cli(["models", "promote", "tiny", "1", "--alias", "champion", "--track",
                         server.url])
    assert code == 0, err
    # The artifacts went through the server to its own artifact store.
    assert list((server.root / "artifacts").rglob("model.keras"))

    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    texts = toy_texts(10, seed=5)[0]
    champion = transferkit.load("models:/tiny@champion")
    np.testing.assert_allclose(champion.predict_proba(texts),
                               transferkit.load(run).predict_proba(texts), atol=1e-6)


def test_the_server_going_away_mid_run_loses_nothing(server, faces, tmp_path):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "transferkit.cli", "train", "images", str(faces), "--output",
               str(run), "--image-size", "64", "--epochs", "2", "--fine-tune-epochs", "4",
               "--fine-tune-patience", "50", "--unfreeze", "20", "--augment", "none",
               "--track", server.url, "--experiment", "away"]
    with open(tmp_path / "output.txt", "w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        deadline = time.time() + 600
        while time.time() < deadline and process.poll() is None:
            state = (json.loads((run / "state.json").read_text())
                     if (run / "state.json").is_file() else {})
            if (state.get("fine_tune") or {}).get("epochs_done", 0) >= 1:
                break
            time.sleep(0.2)
        assert process.poll() is None, "the run ended before the server could go away"
        server.stop()
        process.wait(timeout=600)
    messages = (tmp_path / "output.txt").read_text()
    assert process.returncode == 0, messages[-3000:]
    assert messages.count("Warning: tracking stopped") == 1
    assert f"transferkit runs upload {run} --track {server.url}" in messages
    saved = json.loads((run / "tracking.json").read_text())
    assert saved["pending"] is True and (run / "model.keras").is_file()

    server.start()  # the same store, back again
    code, out, err = _cli(["runs", "upload", run, "--json"])
    assert code == 0, err
    uploaded = json.loads(out.strip().splitlines()[-1])
    assert uploaded["run_id"] == saved["run_id"] and uploaded["finished"]
    client = mlflow.MlflowClient(server.url)
    with open(run / "history.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for step, row in enumerate(rows, start=1):
        logged = client.get_metric_history(saved["run_id"], f"{row['phase']}/loss")
        assert [m.step for m in logged].count(step) == 1, (step, row)
    assert sum(len(client.get_metric_history(saved["run_id"], f"{phase}/loss"))
               for phase in ("head", "fine_tune")) == len(rows)  # no gaps, no duplicates
    mlflow_run = client.get_run(saved["run_id"])
    assert mlflow_run.info.status == "FINISHED"
    assert "model" in {a.path for a in client.list_artifacts(saved["run_id"])}
