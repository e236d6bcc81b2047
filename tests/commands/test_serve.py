"""`transferkit serve`: the command in a child process on a free port, and its one-line errors."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading

import pytest
import requests

from transferkit.cli import main

START_TIMEOUT = 240  # seconds: a fresh process imports TensorFlow and loads the model


def _lines(stream, into: queue.Queue):
    for line in iter(stream.readline, ""):
        into.put(line)
    into.put(None)


@pytest.mark.slow  # a child process that loads TensorFlow: seconds; CI runs the slow set
def test_serve_answers_over_http_and_stops_on_ctrl_c(image_run, tmp_path):
    run, data = image_run[3], image_run[4]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    command = [sys.executable, "-m", "transferkit.cli", "serve", str(run), "--port", "0",
               "--max-batch", "4", "--max-wait-ms", "2"]
    log = tmp_path / "stderr.txt"  # a file, not a pipe: a chatty child never blocks on it
    with open(log, "w") as stderr, subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env
    ) as child:
        _serve_and_stop(child, data, log)


def _serve_and_stop(child: subprocess.Popen, data, log):
    out: queue.Queue = queue.Queue()
    reader = threading.Thread(target=_lines, args=(child.stdout, out), daemon=True)
    reader.start()
    try:
        line = out.get(timeout=START_TIMEOUT)
        assert line, f"serve exited early: {log.read_text()[-3000:]}"
        url = re.search(r"at (http://127\.0\.0\.1:\d+)", line).group(1)
        assert "image classifier: face, not_face; onnx" in line and f"{url}/docs" in line
        health = requests.get(url + "/health", timeout=30).json()
        assert health["status"] == "ok" and health["batching"]["max_batch"] == 4
        assert health["batching"]["max_wait_ms"] == 2.0
        with open(data / "face" / "face_003.png", "rb") as file:
            response = requests.post(url + "/predict", files=[("files", file)], timeout=60)
        assert response.status_code == 200, response.text
        (result,) = response.json()
        assert result["label"] in ("face", "not_face")
        assert sum(result["scores"].values()) == pytest.approx(1.0, abs=1e-5)
        child.send_signal(signal.SIGINT)  # what Ctrl+C sends
        assert child.wait(timeout=60) == 0
        assert "Traceback" not in log.read_text()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        reader.join(timeout=10)


def _error_line(argv, capsys) -> str:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_unknown_runtime_is_one_line(image_run, capsys):
    line = _error_line(["serve", image_run[3], "--runtime", "tflite", "--port", "0"], capsys)
    assert line == ("transferkit: error: Unknown runtime 'tflite'. Choose one of: auto, keras, "
                    "onnx.")


@pytest.mark.slow  # ~8 s: an export made for one error line
def test_the_keras_runtime_on_an_export_folder_is_one_line(image_run, tmp_path, capsys):
    from transferkit.export import export

    folder = export(image_run[3], tmp_path / "onnx", format="onnx", samples=8)["path"]
    line = _error_line(["serve", folder, "--runtime", "keras", "--port", "0"], capsys)
    assert line.startswith(f"transferkit: error: {folder}: is an export folder")


def test_a_port_in_use_names_the_flag(image_run, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        line = _error_line(["serve", image_run[3], "--port", port], capsys)
    assert line.startswith(f"transferkit: error: Cannot listen on 127.0.0.1:{port} (")
    assert "Choose another --port (0 picks a free one)" in line


def test_a_bad_port_or_batch_size_names_the_flag(image_run, capsys):
    line = _error_line(["serve", image_run[3], "--port", "70000"], capsys)
    assert "--port must be an int from 0 to 65535. Received: port=70000." in line
    line = _error_line(["serve", image_run[3], "--max-batch", "0"], capsys)
    assert "--max-batch must be an int from 1 to 1024. Received: max_batch=0." in line
