"""A corpus of bad settings and paths for the small commands and the config files (issue 27):
each is refused before any work, in one line that says what was wrong and how to fix it, and
nothing is left behind; or it is measured and said, never silently changed."""

from __future__ import annotations

import pytest

from transferkit.config import ImageTrainConfig, TextTrainConfig, read_config_file
from transferkit.errors import InputError


def _cli(argv) -> tuple[int, str, str]:
    from conftest import _run_cli

    return _run_cli(argv)


def _one_line(code: int, err: str) -> str:
    """The error line of a refused command: exit 1, one line, no traceback."""
    assert code == 1, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


# -- config files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_a_config_file_with_a_byte_order_mark_is_read(tmp_path, suffix):
    path = tmp_path / f"config{suffix}"
    text = "epochs = 3\n" if suffix == ".toml" else '{"epochs": 3}\n'
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert read_config_file(path) == {"epochs": 3}


@pytest.mark.parametrize(("data", "line", "byte"), [
    (b"epochs = 3\n# caf\xe9 au lait\n", 2, "0xe9"),  # Latin-1
    (b"\xff\xfee\x00p\x00", 1, "0xff"),  # UTF-16
])
def test_a_config_file_not_in_utf8_names_the_line_and_the_fix(tmp_path, data, line, byte):
    path = tmp_path / "config.toml"
    path.write_bytes(data)
    with pytest.raises(InputError, match=rf"config\.toml, line {line}: not valid UTF-8 \(byte "
                                         rf"{byte}\): the file is in another encoding, such as "
                                         r"Latin-1, Windows-1252 or UTF-16\. Re-save it as "
                                         r"UTF-8\.$"):
        read_config_file(path)


def test_a_latin1_config_on_the_command_line_is_one_line(tmp_path, vectors_file):
    config = tmp_path / "config.toml"
    config.write_bytes(b"epochs = 3\n# caf\xe9\n")
    table = tmp_path / "t.csv"
    table.write_text("text,label\ngood,pos\nbad,neg\n")
    code, _, err = _cli(["train", "text", table, "--config", config, "--output", tmp_path / "run"])
    assert "config.toml, line 2: not valid UTF-8 (byte 0xe9)" in _one_line(code, err)
    assert not (tmp_path / "run").exists()


# -- nothing to train -----------------------------------------------------------------------------


@pytest.mark.parametrize("config", [ImageTrainConfig, TextTrainConfig])
def test_no_epochs_at_all_is_refused(config):
    with pytest.raises(InputError, match=r"^`epochs` and `fine_tune_epochs` are both 0: nothing "
                                         r"would be trained, and the model saved would be the "
                                         r"untrained head\. Give `epochs` \(head on the frozen "
                                         r"backbone\) or `fine_tune_epochs` at least 1\.$"):
        config(epochs=0, fine_tune_epochs=0)
    assert config(epochs=0, fine_tune_epochs=1).epochs == 0  # fine-tuning alone still trains


def test_no_epochs_at_all_on_the_command_line_leaves_no_folder(tmp_path, faces):
    run = tmp_path / "run"
    code, _, err = _cli(["train", "images", faces, "--epochs", "0", "--fine-tune-epochs", "0",
                         "--output", run])
    assert "--epochs and --fine-tune-epochs are both 0" in _one_line(code, err)
    assert not run.exists()
