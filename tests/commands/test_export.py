"""`transferkit export`: the command writes a verified export; bad options are one line."""

from __future__ import annotations

import json
import shutil

import pytest

from transferkit.cli import main
from transferkit.files import read_json


@pytest.mark.slow  # two exports: seconds each
def test_export_command_writes_into_the_run_folder(text_run, tmp_path, capsys):
    run = shutil.copytree(text_run[3], tmp_path / "run")  # the shared run stays as it was
    code = main(["export", str(run), "--format", "saved_model", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    record = json.loads(out.strip().splitlines()[-1])
    folder = run / "export" / "saved_model"
    assert record["path"] == str(folder)
    assert read_json(folder / "export.json")["format"] == "saved_model"
    assert record["verified"]["runtime"].startswith("tensorflow ")
    code = main(["export", str(run), "--format", "saved_model"])
    out, err = capsys.readouterr()
    assert code != 0 and err.count("\n") == 1 and "exists and is not empty" in err
    assert "--overwrite" in err
    code = main(["export", str(run), "--format", "saved_model", "--overwrite"])
    out, err = capsys.readouterr()
    assert code == 0 and out.startswith(f"Exported saved_model (none) to {folder}")
    assert "top-1 agreement" in out


def test_export_command_errors(text_run, capsys):
    code = main(["export", str(text_run[3]), "--format", "litert"])
    _, err = capsys.readouterr()
    assert code != 0 and "cannot be exported to LiteRT" in err and err.count("\n") == 1
