"""`transferkit predict` and `transferkit evaluate`: any saved classifier, image or text."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from transferkit.cli import main


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_predict_and_evaluate_an_image_model(image_run, faces, capsys):
    run = image_run[3]
    images = [faces / "face" / "face_000.png", faces / "not_face" / "not_face_001.png"]
    code, out, _ = _run(["predict", run / "model.keras", *images, "--json"], capsys)
    assert code == 0
    results = json.loads(out.strip().splitlines()[-1])
    assert [r["path"] for r in results] == [str(p) for p in images]
    for result in results:
        assert result["label"] in ("face", "not_face")
        assert result["score"] == max(result["probabilities"].values())
    code, out, _ = _run(["predict", run, *images], capsys)  # a run folder works too
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 2 and lines[0].endswith("face_000.png")
    code, out, _ = _run(["evaluate", run, faces, "--json"], capsys)
    assert code == 0
    metrics = json.loads(out.strip().splitlines()[-1])
    assert metrics["n"] == 40 and metrics["classes"] == ["face", "not_face"]
    right = sum(row[i] for i, row in enumerate(metrics["confusion_matrix"]))
    assert metrics["accuracy"] == right / 40


def test_evaluate_says_what_it_skipped(image_run, faces, tmp_path, capsys):
    run = image_run[3]
    data = tmp_path / "data"
    for name in ("face", "not_face"):
        (data / name).mkdir(parents=True)
        (data / name / "a.png").write_bytes((faces / name / f"{name}_000.png").read_bytes())
    (data / "face" / "broken.png").write_bytes(b"\x89PNG broken")
    report = tmp_path / "report"
    code, out, _ = _run(["evaluate", run, data, "--report-dir", report], capsys)
    assert code == 0 and "on 2 examples (2 classes); 1 skipped" in out
    # The count, the reason, the file, and where the whole list is (issue 16, bug 6).
    broken = data / "face" / "broken.png"
    assert "1 skipped: 1 " in out and f"({broken}); listed in {report / 'skipped.json'}" in out
    assert [entry["path"] for entry in json.loads((report / "skipped.json").read_text())] == [
        str(broken)
    ]
    assert f"Report: {report}" in out
    assert (report / "mistakes.png").is_file()


def test_predict_skips_an_unreadable_image_and_predicts_the_others(image_run, faces, tmp_path,
                                                                    capsys):
    # Issue 16, bug 1: one bad file aborted `predict` of every file given with it.
    run, good = image_run[3], faces / "face" / "face_000.png"
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 cut short")
    code, out, err = _run(["predict", run, broken, good], capsys)
    lines = out.strip().splitlines()
    assert code == 0, err
    assert lines[0].startswith("skipped") and f"{broken}: the image is corrupt" in lines[0]
    assert lines[1].endswith("face_000.png") and lines[1].split()[0] in ("face", "not_face")
    code, out, _ = _run(["predict", run, broken, good, "--json"], capsys)
    rows = json.loads(out.strip().splitlines()[-1])
    assert set(rows[0]) == {"path", "skipped"} and rows[1]["label"] in ("face", "not_face")
    code, out, err = _run(["predict", run, broken], capsys)  # nothing readable: one error line
    assert code == 1 and not out and "1 image(s) could not be read" in err
    assert len(err.strip().splitlines()) == 1


def test_a_text_model_in_python_refuses_an_image_file(text_run, faces):
    from transferkit import load
    from transferkit.errors import InputError

    classifier = load(text_run[3])
    image = faces / "face" / "face_000.png"
    with pytest.raises(InputError, match=f"text model; {image} is an image file"):
        classifier.predict([str(image)])
    assert classifier.predict(["face_000.png was a fine film"])[0]["label"]


def test_predict_and_evaluate_a_text_model(text_run, capsys):
    run, table = text_run[3], text_run[4]
    code, out, _ = _run(["predict", run / "model.keras", "a great fun film", "dull boring",
                         "--json"], capsys)
    assert code == 0
    assert [p["label"] for p in json.loads(out.strip().splitlines()[-1])] == [
        "positive", "negative"
    ]
    code, out, _ = _run(["evaluate", run, table, "--json"], capsys)
    evaluation = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and evaluation["n"] == 60 and evaluation["num_skipped"] == 2
    assert evaluation["classes"] == ["negative", "positive"]
    assert evaluation["skipped"] == [{"line": 62, "reason": "empty or missing text"},
                                     {"line": 63, "reason": "missing label"}]
    code, out, _ = _run(["evaluate", run, table], capsys)
    assert code == 0 and "on 60 examples (2 classes); 2 skipped" in out
    assert ("2 skipped: 1 empty or missing text (line 62), 1 missing label (line 63); "
            "listed in --json") in out


def test_evaluate_suggests_column_flags_that_it_accepts(text_run, image_run, tmp_path,
                                                       capsys):
    """Issue 16, bug 10: the message named `--label-column`, which `evaluate` did not accept."""
    import re

    from transferkit.cli import build_parser

    run = text_run[3]
    table = tmp_path / "renamed.csv"
    table.write_text("body,verdict\na great fun film,positive\ndull boring,negative\n")
    code, _, err = _run(["evaluate", run, table], capsys)
    (suggested,) = re.findall(r"--[a-z-]+", err)
    assert code == 1 and suggested == "--text-column", err
    build_parser().parse_args(["evaluate", str(run), str(table), suggested, "body"])
    code, _, err = _run(["evaluate", run, table, "--text-column", "body"], capsys)
    (suggested,) = re.findall(r"--[a-z-]+", err)
    assert code == 1 and suggested == "--label-column", err
    code, out, err = _run(["evaluate", run, table, "--text-column", "body", suggested, "verdict",
                           "--json"], capsys)
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["n"] == 2
    code, _, err = _run(["evaluate", image_run[3], image_run[4], "--label-column", "verdict"],
                        capsys)
    assert code == 1 and "is a folder of class sub-folders; --path-column and --label-column are "\
        "for a table" in err, err


@pytest.mark.slow  # a new Python process importing TensorFlow (~8 s)
def test_predict_in_a_fresh_process(image_run, faces):
    """`transferkit.load` must find transferkit's layers without the test having imported them."""
    run = image_run[3]
    result = subprocess.run(
        [sys.executable, "-m", "transferkit.cli", "predict", str(run / "model.keras"),
         str(faces / "face" / "face_002.png"), "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (prediction,) = json.loads(result.stdout.strip().splitlines()[-1])
    assert prediction["label"] in ("face", "not_face")
