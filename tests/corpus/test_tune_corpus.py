"""Bad input to `transferkit tune` (issue 31): each refused in one line that says what was wrong
and how to fix it: settings that cannot run, a storage that cannot be opened, a study of other
data, an encoder without features to search on, data a search cannot split."""

from __future__ import annotations

import pytest

from helpers import refused_in_one_line
from transferkit.testing import TINY_BACKBONE

pytest.importorskip("optuna", reason="the tune extra (optuna) is not installed")


def _cli(argv) -> tuple[int, str, str]:
    from conftest import _run_cli

    return _run_cli([str(a) for a in argv])


@pytest.fixture(scope="module")
def searched(faces, tmp_path_factory):
    """A two-trial study of the faces: its output folder."""
    out = tmp_path_factory.mktemp("tune") / "out"
    code, _, err = _cli(["tune", "images", faces, "--backbones", TINY_BACKBONE, "--trials", 2,
                         "--folds", 0, "--output", out, "--json"])
    assert code == 0, err
    return out


@pytest.mark.parametrize(("args", "said"), [
    (["--trials", "0"], "--trials must be an int >= 1"),
    (["--folds", "1"], "--folds 1 cannot cross-validate"),
    (["--folds", "-2"], "--folds must be an int >= 0"),
    (["--jobs", "0"], "--jobs must be an int >= 1"),
    (["--storage", "nosuchdb://x"], "--storage nosuchdb://x: cannot open it"),
    (["--output", "{file}"], "is a file"),
])
def test_bad_settings_are_one_line(faces, tmp_path, args, said):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    args = [a.format(file=a_file) for a in args]
    if "--output" not in args:
        args += ["--output", tmp_path / "out"]
    refused_in_one_line(_cli(["tune", "images", faces, "--backbones", TINY_BACKBONE, *args]), said)


def test_a_study_of_other_data_is_refused(searched, faces, tmp_path):
    out = searched
    other = tmp_path / "other"
    other.mkdir()
    for name in ("face", "not_face"):
        (other / name).symlink_to(faces / name)
    result = _cli(["tune", "images", other, "--backbones", TINY_BACKBONE, "--trials", 5,
                   "--output", out])
    refused_in_one_line(result, "tunes other data: data")


def test_glove_bilstm_has_no_features_to_tune_on(vectors_file, tmp_path):
    from transferkit.testing import write_table

    table = write_table(tmp_path / "reviews.csv", n=40, bad_rows=False)
    result = _cli(["tune", "text", table, "--backbones", "glove-bilstm", "--output",
                   tmp_path / "out"])
    refused_in_one_line(result, "trains its whole network on token ids")


def test_one_class_is_refused_before_any_trial(faces, tmp_path):
    one = tmp_path / "one"
    one.mkdir()
    (one / "face").symlink_to(faces / "face")
    result = _cli(["tune", "images", one, "--backbones", TINY_BACKBONE, "--output",
                   tmp_path / "out"])
    refused_in_one_line(result, "class")


def test_an_unknown_backbone_is_one_line(faces, tmp_path):
    result = _cli(["tune", "images", faces, "--backbones", "efficientnet_lite9",
                   "--output", tmp_path / "out"])
    refused_in_one_line(result, "efficientnet_lite9")
