"""Fuzzing the image loader (issue 16): random bytes behind the header of each format it reads, and
real images with random bytes overwritten, give either an RGB `uint8` array or `ImageReadError`:
never another exception, never a hang. Few examples, so that the file runs in seconds."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from helpers import photo
from transferkit.data.images import load_image, load_resized
from transferkit.errors import ImageReadError

HEADERS = {
    "jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
    "png": b"\x89PNG\r\n\x1a\n",
    "gif": b"GIF89a",
    "webp": b"RIFF\x00\x10\x00\x00WEBP",
    "bmp": b"BM",
}
FUZZ = settings(max_examples=100, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def _real(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(photo(24, 32)).save(buffer, format=fmt)
    return buffer.getvalue()


REAL = {fmt: _real(fmt) for fmt in ("JPEG", "PNG", "GIF", "WEBP", "BMP")}


def _check(path) -> None:
    """Loading gives RGB uint8 pixels or `ImageReadError`; anything else fails the test."""
    for load in (load_image, lambda p: load_resized(p, 16)):
        try:
            pixels = load(path)
        except ImageReadError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc)
            continue
        assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[-1] == 3


@pytest.mark.parametrize("name", sorted(HEADERS))
@FUZZ
@given(tail=st.binary(max_size=2048))
def test_random_bytes_after_an_image_header(tmp_path, name, tail):
    path = tmp_path / f"fuzz.{name}"
    path.write_bytes(HEADERS[name] + tail)
    _check(path)


@pytest.mark.parametrize("fmt", sorted(REAL))
@FUZZ
@given(data=st.data())
def test_a_real_image_with_bytes_overwritten_or_cut(tmp_path, fmt, data):
    content = bytearray(REAL[fmt])
    for _ in range(data.draw(st.integers(1, 8), label="changes")):
        at = data.draw(st.integers(0, len(content) - 1), label="at")
        content[at] = data.draw(st.integers(0, 255), label="byte")
    cut = data.draw(st.integers(1, len(content)), label="length")
    path = tmp_path / f"fuzz.{fmt.lower()}"
    path.write_bytes(bytes(content[:cut]))
    _check(path)
