"""The run skeleton both training commands share: settings, the run folder, resume, interrupts."""

from __future__ import annotations

import json

import pytest

from transferkit.config import ImageTrainConfig, TextTrainConfig
from transferkit.errors import InputError
from transferkit.pipelines.run import TrainingRun
from transferkit.run_folder import RunFolder


def test_a_new_run_saves_its_config_only_when_started(tmp_path):
    lines = []
    run = TrainingRun(ImageTrainConfig, tmp_path / "data", output=tmp_path / "run",
                      options={"epochs": 3, "seed": None}, log=lines.append)
    assert run.config.epochs == 3 and run.config.seed == ImageTrainConfig.seed
    assert run.config.data == str((tmp_path / "data").resolve())  # absolute, for resuming
    with run:
        assert not (tmp_path / "run").exists()  # nothing on disk before the data is read
        run.start()
        assert (tmp_path / "run" / ".lock").is_file()  # while it runs
    assert not (tmp_path / "run" / ".lock").exists()
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved == {"task": "images", **run.config.to_dict()}
    assert ImageTrainConfig.from_dict({k: v for k, v in saved.items() if k != "task"}) == run.config
    with pytest.raises(InputError, match=r"already holds a run\. Pass it as `resume` to continue "
                                         r"it \(.+\), or start over: pass another `output`, "
                                         r"or remove .+run\.$"):
        TrainingRun(ImageTrainConfig, tmp_path / "data", output=tmp_path / "run")


def test_resume_uses_the_saved_settings_and_says_what_it_ignored(tmp_path):
    TrainingRun(TextTrainConfig, tmp_path / "t.csv", output=tmp_path / "run",
                options={"epochs": 4}).start()
    RunFolder(tmp_path / "run").update_state(head={"epochs_done": 1, "epochs": 4})
    lines = []
    run = TrainingRun(TextTrainConfig, resume=tmp_path / "run", options={"epochs": 9, "seed": 0},
                      log=lines.append)
    assert run.resuming and run.config.epochs == 4
    assert lines == [
        f"Resuming {tmp_path / 'run'} (state: head 1/4 epochs)",
        "Resuming uses the run's saved settings for what it has begun; ignored: epochs. To train "
        f"with them, start over: another --output (or remove {tmp_path / 'run'})",
    ]
    with pytest.raises(InputError, match=r"is a run of `train text`, not `train images`"):
        TrainingRun(ImageTrainConfig, resume=tmp_path / "run")
    with pytest.raises(InputError, match=r"nope: no such run folder"):
        TrainingRun(ImageTrainConfig, resume=tmp_path / "nope")


def test_settings_are_checked_at_once(tmp_path):
    with pytest.raises(InputError, match=r"Unknown setting\(s\) epoch for `train images`\. "
                                         r"Known: data, backbone,"):
        TrainingRun(ImageTrainConfig, tmp_path, options={"epoch": 3})
    with pytest.raises(InputError, match=r"Pass the data to train on \(`data`\)"):
        TrainingRun(ImageTrainConfig)
    with pytest.raises(InputError, match=r"`fine_tune_epochs` must be an int >= 0"):
        TrainingRun(ImageTrainConfig, tmp_path, options={"fine_tune_epochs": -1})
    with pytest.raises(InputError, match=r"`test_size \+ validation_size` must be below 1"):
        TrainingRun(TextTrainConfig, tmp_path, options={"test_size": 0.6, "validation_size": 0.5})


def test_ctrl_c_says_how_to_resume(tmp_path):
    with pytest.raises(KeyboardInterrupt) as caught:
        with TrainingRun(ImageTrainConfig, tmp_path, output=tmp_path / "run") as run:
            run.start()
            raise KeyboardInterrupt
    assert str(caught.value) == (
        f"the finished epochs are saved. Continue with: transferkit train images --resume "
        f"{tmp_path / 'run'}"
    )
