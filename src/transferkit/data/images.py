"""Reading images from disk the way users keep them.

`load_image` decodes one file with Pillow into an RGB uint8 array: EXIF orientation applied;
grayscale, RGBA, palette, CMYK and 16-bit images converted to RGB. Anything wrong with the path
raises `ImageReadError` with one line that names the path and what to do.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from transferkit.errors import ImageReadError

__all__ = ["IMAGE_EXTENSIONS", "load_image", "resize_image"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


def _to_rgb(image):
    from PIL import Image

    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grayscale: scale the actual range to 8 bits instead of clipping at 255.
        array = np.asarray(image, dtype=np.float64)
        high = array.max() if array.size else 0
        scale = 255.0 / high if high > 255 else 1.0
        image = Image.fromarray(np.clip(array * scale, 0, 255).astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Composite transparency over white, as a viewer shows it, instead of dropping alpha.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Reads an image file into an RGB `uint8` array of shape `(height, width, 3)`.

    Args:
        path: a JPEG, PNG, BMP, GIF (first frame) or WebP file.

    Returns:
        The pixels, with EXIF orientation applied.

    Raises:
        ImageReadError: the path does not exist, is a folder, or is not a readable image.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: no such file. Check the path and try again.")
    if path.is_dir():
        raise ImageReadError(
            f"{path}: is a folder, expected an image file. Pass the image files inside it "
            f"(for example {path}/*.jpg)."
        )
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            image.load()
            rgb = _to_rgb(image)
            return np.asarray(rgb, dtype=np.uint8).copy()
    except UnidentifiedImageError:
        raise ImageReadError(
            f"{path}: not an image Pillow can read. Use JPEG, PNG, BMP, GIF or WebP files."
        ) from None
    except PermissionError:
        raise ImageReadError(f"{path}: permission denied. Make the file readable.") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(
            f"{path}: the image is corrupt or truncated ({exc}). Re-export or remove the file."
        ) from None


def resize_image(image: np.ndarray, size: int | tuple[int, int], policy: str = "center_crop"):
    """Resizes an RGB array to `size` (an int for a square, or `(height, width)`).

    Args:
        image: `uint8` array `(h, w, 3)`.
        size: target side or `(height, width)`.
        policy: `"center_crop"` (default) resizes the shorter side to fit, then crops the centre,
            keeping the aspect ratio; `"stretch"` resizes to `size` directly.

    Returns:
        A `float32` array `(height, width, 3)` with values in [0, 255].
    """
    from PIL import Image

    height, width = (size, size) if isinstance(size, int) else size
    pil = Image.fromarray(image)
    if policy == "stretch":
        out = pil.resize((width, height), Image.BICUBIC)
    elif policy == "center_crop":
        scale = max(height / pil.height, width / pil.width)
        new_w = max(width, round(pil.width * scale))
        new_h = max(height, round(pil.height * scale))
        pil = pil.resize((new_w, new_h), Image.BICUBIC)
        left, top = (new_w - width) // 2, (new_h - height) // 2
        out = pil.crop((left, top, left + width, top + height))
    else:
        raise ValueError(
            f"`policy` must be 'center_crop' or 'stretch'. Received: policy={policy!r}."
        )
    return np.asarray(out, dtype=np.float32)
