"""The argument checks every module shares: one wording for every message."""

from __future__ import annotations

import numpy as np
import pytest

from transferkit.checks import check_choice, check_fraction, check_int, check_number
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
