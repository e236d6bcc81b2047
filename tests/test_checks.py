"""The argument checks every module shares: one wording for every message."""

from __future__ import annotations

import numpy as np
import pytest

from transferkit.checks import (
    check_choice,
    check_fraction,
    check_image_size,
    check_int,
    check_number,
    check_unfreeze,
)
from transferkit.errors import InputError


def test_check_int():
    assert check_int(np.int64(3), "epochs", minimum=0) == 3
    for bad in (-1, 1.5, True, "3", None):
        with pytest.raises(InputError, match=r"^`epochs` must be an int >= 0\. Received: epochs="):
            check_int(bad, "epochs", minimum=0)
    with pytest.raises(InputError, match=r"`size` must be an int >= 3 \(two reserved\)\."):
        check_int(2, "size", minimum=3, why="two reserved")
    assert check_int(-5, "offset") == -5


def test_check_number_and_fraction():
    assert check_number(0, "dropout", 0, 1, include_maximum=False) == 0.0
    with pytest.raises(InputError, match=r"`dropout` must be a number in \[0, 1\)\."):
        check_number(1, "dropout", 0, 1, include_maximum=False)
    with pytest.raises(InputError, match=r"`rate` must be a number > 0\. Received: rate=0\."):
        check_number(0, "rate", 0, include_minimum=False)
    with pytest.raises(InputError, match=r"`rate` must be a number <= 1\."):
        check_number(2, "rate", maximum=1)
    assert check_fraction(0.25, "test_size") == 0.25
    for bad in (0, 1, "0.5", False):
        with pytest.raises(InputError, match=r"`test_size` must be a number in \(0, 1\)"):
            check_fraction(bad, "test_size")


def test_check_choice():
    assert check_choice("layers", "features", ("layers", "sentence")) == "layers"
    with pytest.raises(InputError, match=r"`features` must be one of 'layers', 'sentence'\. "
                                         r"Received: features='cls'\."):
        check_choice("cls", "features", ("layers", "sentence"))


def test_check_image_size():
    assert check_image_size(32) == (32, 32)
    assert check_image_size((24, 40)) == (24, 40)
    assert check_image_size([24, 40]) == (24, 40)
    for bad in (-3, 0, (3,), (3, -1), 2.5, True, "224"):
        with pytest.raises(InputError, match=r"`image_size` must be a positive int or a pair of them"):
            check_image_size(bad)


def test_check_unfreeze():
    assert check_unfreeze("all") == "all" and check_unfreeze(" block6a ") == "block6a"
    assert check_unfreeze(5) == 5 and check_unfreeze("12") == 12
    with pytest.raises(InputError, match=r"must be >= 1 \(to skip fine-tuning, pass "
                                         r"`fine_tune_epochs`=0\)"):
        check_unfreeze(0)
    for bad in (True, "", None, 1.5):
        with pytest.raises(InputError, match=r"`unfreeze` must be 'all', a number of top layers"):
            check_unfreeze(bad)
