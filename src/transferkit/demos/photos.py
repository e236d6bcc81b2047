"""Real photos bundled with scikit-image (`skimage.data`), written out as JPEG files."""

from __future__ import annotations

from pathlib import Path

# skimage.data function -> file name; all are colour photos bundled with the package (no download).
PHOTOS = {
    "chelsea": "cat.jpg",
    "coffee": "coffee.jpg",
    "rocket": "rocket.jpg",
    "astronaut": "astronaut.jpg",
}


def sample_photos(folder: str | Path) -> list[Path]:
    """Writes the bundled photos to `folder` and returns their paths."""
    import skimage.data
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for function, filename in PHOTOS.items():
        path = folder / filename
        if not path.exists():
            Image.fromarray(getattr(skimage.data, function)()).save(path, quality=95)
        paths.append(path)
    return paths
