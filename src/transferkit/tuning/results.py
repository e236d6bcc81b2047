"""What a search leaves for its user: `trials.csv` (Optuna's table of every trial), `best.toml`
(the best trial's settings as a `--config` file that `train` reads as is), Optuna's own plots
(optimisation history, parameter importances, slices) as PNG files."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["best_config", "write_plots", "write_toml", "write_trials"]


def best_config(prepared, params: dict, seed: int) -> dict:
    """The `train` settings of a trial's `params` (the candidate as `backbone`, or as `encoder`
    and `features`), with the trials' most epochs and their seed."""
    from transferkit.tuning.trials import MAX_EPOCHS, settings_of

    settings = {key: value for key, value in settings_of(params).items() if key != "candidate"}
    candidate = params.get("candidate", prepared.candidates[0])
    if prepared.kind == "images":
        settings = {"backbone": candidate, **settings}
    else:
        encoder, _, features = candidate.rpartition(":")
        settings = {"encoder": encoder, "features": features, **settings}
    return {**settings, "epochs": MAX_EPOCHS, "seed": seed, "target": "single-label"}


def write_toml(settings: dict, path: Path) -> Path:
    """`settings` (strings, numbers, booleans) as a flat TOML table. Written here: TOML's
    standard library module reads only, and a flat table of scalars needs no more than this
    (JSON strings are valid TOML basic strings)."""
    from transferkit.files import atomic_write

    lines = ["# The best trial's settings: transferkit train KIND DATA --config best.toml"]
    for key, value in settings.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (int, float)):
            text = repr(value)
        else:
            text = json.dumps(str(value))
        lines.append(f"{key} = {text}")
    with atomic_write(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def write_trials(study, path: Path) -> Path:
    """Every trial of `study`, one row each (Optuna's `trials_dataframe`), as CSV."""
    from transferkit.files import atomic_write

    frame = study.trials_dataframe(attrs=("number", "value", "state", "params", "user_attrs",
                                          "duration"))
    with atomic_write(path, "w") as handle:
        frame.to_csv(handle, index=False)
    return path


def write_plots(study, folder: Path, log) -> dict[str, Path]:
    """Optuna's matplotlib plots of `study` as PNG files; a plot Optuna cannot draw yet (the
    importances need two complete trials that differ) is left out and said."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    written = {}
    # The slice plot keeps Optuna's own layout: tight_layout draws its colour bar over the
    # last panels (looked at: "Trial" over the patience panel).
    for name, draw, tight in (("optimization_history", plots.plot_optimization_history, True),
                              ("param_importances", plots.plot_param_importances, True),
                              ("slice", plots.plot_slice, False)):
        path = folder / f"{name}.png"
        try:
            with warnings.catch_warnings():  # "experimental" on every call
                warnings.simplefilter("ignore")
                axes = draw(study)
        except (ValueError, RuntimeError) as exc:
            log(f"  {name}.png not drawn: {str(exc).splitlines()[0]}")
            continue
        first = axes.flat[0] if hasattr(axes, "flat") else axes
        figure = first.figure
        figure.set_size_inches(max(6.4, figure.get_size_inches()[0]), 4.8)
        if tight:
            figure.tight_layout()
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written[name] = path
    return written
