"""`RunFolder`: the folder one training run writes."""

from __future__ import annotations

import json

import pytest

from transferkit.errors import InputError
from transferkit.run_folder import RunFolder, default_run_dir


def test_run_directory_layout_config_and_state(tmp_path):
    run = RunFolder(tmp_path / "run").create()
    assert run.path.is_dir()
    assert run.report_dir == run.path / "report"
    assert run.checkpoint_dir == run.path / "checkpoints"
    assert run.log_dir == run.path / "logs"
    assert run.model_path == run.path / "model.keras"
    assert run.config_path == run.path / "config.json"
    assert run.state_path == run.path / "state.json"
    assert run.state() == {} and run.history_rows() == []
    run.save_config({"backbone": "x", "epochs": 3})
    assert RunFolder(run.path).load_config() == {"backbone": "x", "epochs": 3}
    run.update_state(head={"epochs_done": 1})
    run.update_state(fine_tune={"epochs_done": 0})
    assert json.loads(run.state_path.read_text()) == {
        "head": {"epochs_done": 1},
        "fine_tune": {"epochs_done": 0},
    }


def test_load_config_of_a_folder_that_is_not_a_run(tmp_path):
    message = r"is not a transferkit run folder: it has no config\.json"
    with pytest.raises(InputError, match=message):
        RunFolder(tmp_path).load_config()
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(InputError, match=r"config\.json: not valid JSON"):
        RunFolder(tmp_path).load_config()


def test_run_directory_on_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match="is a file, expected a run folder"):
        RunFolder(tmp_path / "f").create()


def test_default_run_dir(tmp_path):
    path = default_run_dir("images", root=tmp_path)
    assert path.parent == tmp_path
    assert path.name.startswith("images-") and len(path.name) == len("images-20240501-120000")
    path.mkdir()
    assert default_run_dir("images", root=tmp_path) != path or path.name.endswith("-2")
    assert default_run_dir("text").parts[0] == "runs"


def test_a_run_folder_is_a_layout_until_created(tmp_path):
    run = RunFolder(tmp_path / "new")
    assert run.model_path == tmp_path / "new" / "model.keras"
    assert run.metrics_path == tmp_path / "new" / "report" / "metrics.json"
    assert not (tmp_path / "new").exists() and not run.is_run()
    run.create().save_config({"task": "image"})
    assert run.is_run() and RunFolder.of_model(run.model_path).path == run.path
    assert RunFolder.of_model(tmp_path / "elsewhere.keras") is None
