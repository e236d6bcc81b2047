"""Tasks: a backbone (or text encoder), its preprocessing and a trained head, saved as one file."""

from transferkit.tasks.base import ClassLabels, load

__all__ = ["ClassLabels", "load"]
